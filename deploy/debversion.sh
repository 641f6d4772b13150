#!/bin/sh
# Turns a `git describe` version into a Debian one, which must start with a
# digit and sort sensibly. A tag has a dot, a bare hash has none:
#   v1.2.3 -> 1.2.3, v1.2.3-4-gabc -> 1.2.3+4.gabc,
#   abc1234-dirty -> 0.0.0~gitabc1234.dirty (sorts before any release).
v=${1#v}
case "$v" in
[0-9]*.[0-9]*) echo "$v" | sed 's/-/+/; s/-/./g' ;;
*) echo "0.0.0~git$v" | tr -- '-' '.' ;;
esac

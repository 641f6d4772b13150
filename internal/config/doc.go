// Package config reads and validates gatewayd's TOML configuration file, the
// product's main user interface (see docs in the README and
// /configs/gatewayd.toml).
//
// It parses once into plain structs and checks everything it can without
// touching hardware or the network: unknown keys, wrong types and
// out-of-range values are errors that name the file, the line and the key and
// say what is allowed. Relative paths in the file are relative to the file's
// own directory, so a config on the boot partition can name a secret file
// beside it.
//
// It must never print or log a secret; Masked returns a copy safe to show.
// It knows nothing of the layers: cmd/gatewayd turns a Config into each
// layer's own options.
package config

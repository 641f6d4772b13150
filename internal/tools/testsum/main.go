// Command testsum reads `go test -json` on stdin, prints each package's
// result, the output of every failed test, and a closing summary line
// "tests: N passed, N failed, N skipped". It exits non-zero when anything
// failed (including a package that did not build).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	outputs := map[string]*strings.Builder{} // package/test -> output
	var passed, failed, skipped int
	var failedNames []string
	pkgFailed := false
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Println(string(line)) // build errors come as plain text
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "build-output":
			fmt.Print(e.Output)
		case "build-fail":
			pkgFailed = true
		case "output":
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			b.WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				status := map[string]string{"pass": "ok  ", "fail": "FAIL", "skip": "----"}[e.Action]
				fmt.Printf("%s %-40s %6.1fs\n", status, e.Package, e.Elapsed)
				if e.Action == "fail" {
					pkgFailed = true
					// A test that panicked or hit the timeout never reports
					// its own end: count it failed and show what it said.
					for k, b := range outputs {
						if strings.HasPrefix(k, e.Package+" ") && k != key && !strings.Contains(k, "/") {
							failed++
							failedNames = append(failedNames, k)
							fmt.Printf("--- FAIL %s (did not finish)\n%s", k, indent(b.String()))
						}
					}
					if b := outputs[key]; b != nil {
						fmt.Print(indent(b.String()))
					}
				}
				for k := range outputs {
					if strings.HasPrefix(k, e.Package+" ") {
						delete(outputs, k)
					}
				}
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "skip":
				skipped++
			case "fail":
				failed++
				failedNames = append(failedNames, key)
				if b := outputs[key]; b != nil && !strings.Contains(e.Test, "/") {
					fmt.Printf("--- FAIL %s\n%s", key, indent(b.String()))
				}
			}
			delete(outputs, key)
		}
	}
	sort.Strings(failedNames)
	for _, n := range failedNames {
		fmt.Printf("failed: %s\n", n)
	}
	summary := fmt.Sprintf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	fmt.Print(summary)
	if f := os.Getenv("TESTSUM_OUT"); f != "" { // CI repeats it last
		os.WriteFile(f, []byte(summary), 0o644)
	}
	if failed > 0 || pkgFailed {
		os.Exit(1)
	}
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

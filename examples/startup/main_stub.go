//go:build !manager

// Temporary until the Manager lands on main: main.go (build tag manager)
// is the real example.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "startup: built without the Manager (build tag manager)")
	os.Exit(2)
}

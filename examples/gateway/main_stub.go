//go:build !manager

// Temporary until the Manager lands on main: main.go (build tag manager)
// wires dbmanager.Manager; this stub lets the handlers build and test.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "gateway: built without the Manager (build tag manager)")
	os.Exit(2)
}

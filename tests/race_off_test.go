//go:build !race

package tests

// raceBuild: see race_on_test.go.
const raceBuild = false

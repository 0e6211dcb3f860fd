//go:build race

package tests

// raceBuild: the test binary (and every module process re-executed from
// it) runs under the race detector, several times slower and larger.
const raceBuild = true

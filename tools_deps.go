//go:build tools

package fdp

import (
	_ "github.com/edsrzf/mmap-go"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sys/unix"
)

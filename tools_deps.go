//go:build tools

package fdp

import (
	_ "github.com/edsrzf/mmap-go"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "golang.org/x/sys/unix"
	_ "go.yaml.in/yaml/v3"
)

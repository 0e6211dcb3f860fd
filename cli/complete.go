package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fdp-engine/fdp/shm"
	"github.com/spf13/cobra"
)

// Shell completion: cobra's `completion bash|zsh|fish|powershell` writes the
// script; the script asks the program itself (`__complete ARGS...`) for the
// candidates, so instance names come from the segment directory at the
// moment of the Tab: every instance that has segments there (live first in
// meaning, stale ones still inspectable), described as "live, pid N" or
// "stale", and for `dump` the segment names and, after an instance, its
// kinds.

// instanceCandidates lists the instances with segments in shm.Dir, each as
// "name\tstate" (the description the shells show), sorted by name. An
// unreadable directory gives none: completion never prints an error.
func instanceCandidates() []string {
	infos, _ := shm.List()
	type inst struct {
		pid  uint32
		live bool
	}
	seen := map[string]*inst{}
	for _, in := range infos {
		if in.Instance == "" {
			continue
		}
		s := seen[in.Instance]
		if s == nil {
			s = &inst{}
			seen[in.Instance] = s
		}
		if in.Kind == shm.WorldKind && in.State == shm.StateLive {
			s.live, s.pid = true, in.PID
		}
	}
	out := make([]string, 0, len(seen))
	for name, s := range seen {
		desc := "stale (no live engine)"
		if s.live {
			desc = fmt.Sprintf("live, engine pid %d", s.pid)
		}
		out = append(out, name+"\t"+desc)
	}
	sort.Strings(out)
	return out
}

// completeInstance completes the first argument with an instance name.
func completeInstance(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return instanceCandidates(), cobra.ShellCompDirectiveNoFileComp
}

// completeInstanceFlag completes an --instance flag's value.
func completeInstanceFlag(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return instanceCandidates(), cobra.ShellCompDirectiveNoFileComp
}

// completeSegment completes dump's and verify's arguments: first an
// instance or a segment name (or a file: the shell's own file completion
// stays on), then, for dump after an instance, the kinds of its segments.
func completeSegment(maxArgs int) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		infos, _ := shm.List()
		switch {
		case len(args) == 0:
			out := instanceCandidates()
			for _, in := range infos {
				out = append(out, in.Name+"\t"+in.State)
			}
			return out, cobra.ShellCompDirectiveDefault
		case len(args) == 1 && maxArgs == 2:
			var out []string
			for _, in := range infos {
				if in.Instance == args[0] {
					out = append(out, strings.TrimPrefix(in.Name, shm.Prefix+in.Instance+".")+"\t"+in.State)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

// registerInstanceFlag makes c's --instance flag complete instance names.
func registerInstanceFlag(c *cobra.Command) {
	_ = c.RegisterFlagCompletionFunc("instance", completeInstanceFlag) // the flag exists: no error
}

// refuseUnknownShell makes `completion SHELL` of a shell cobra has no
// script for (tcsh) an error naming the shells, exit 1: cobra's completion
// command is not runnable itself, so it printed its help and exited 0.
func refuseUnknownShell(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		var shells []string
		for _, sh := range c.Commands() {
			shells = append(shells, sh.Name())
		}
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("%s: name a shell: %s", cmd.CommandPath(), strings.Join(shells, ", "))
			}
			return fmt.Errorf("%s %s: no completion script for this shell: want %s", cmd.CommandPath(), args[0], strings.Join(shells, ", "))
		}
	}
}

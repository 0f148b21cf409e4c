package ctl

import (
	"strings"

	"github.com/spf13/cobra"
)

// table prints hdr and rows as etcdctl's -w table does: a boxed grid, the
// header upper-cased and centered, cells right-aligned.
func (p *printer) table(hdr []string, rows [][]string) {
	widths := make([]int, len(hdr))
	for i, h := range hdr {
		widths[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			if i < len(widths) && len(c) > widths[i] {
				widths[i] = len(c)
			}
		}
	}
	var sep strings.Builder
	sep.WriteString("+")
	for _, w := range widths {
		sep.WriteString(strings.Repeat("-", w+2))
		sep.WriteString("+")
	}
	line := sep.String()
	p.println(line)
	var b strings.Builder
	b.WriteString("|")
	for i, h := range hdr {
		h = strings.ToUpper(h)
		left := (widths[i] - len(h)) / 2
		right := widths[i] - len(h) - left
		b.WriteString(" " + strings.Repeat(" ", left) + h + strings.Repeat(" ", right) + " |")
	}
	p.println(b.String())
	p.println(line)
	for _, r := range rows {
		b.Reset()
		b.WriteString("|")
		for i := range hdr {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(" " + strings.Repeat(" ", widths[i]-len(c)) + c + " |")
		}
		p.println(b.String())
	}
	p.println(line)
}

// leafCommands lists every runnable command under c with its path below
// the root and its one-line description, as etcdctl's help does.
func leafCommands(c *cobra.Command) [][2]string {
	var out [][2]string
	var walk func(c *cobra.Command, prefix string)
	walk = func(c *cobra.Command, prefix string) {
		for _, s := range c.Commands() {
			if s.Hidden {
				continue
			}
			name := strings.TrimSpace(prefix + " " + s.Name())
			if s.Runnable() {
				out = append(out, [2]string{name, s.Short})
			}
			walk(s, name)
		}
	}
	walk(c, "")
	return out
}

func indent(s string) string {
	return "\t" + strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\n\t")
}

func useLine(c *cobra.Command) string {
	if c.HasParent() {
		return c.UseLine()
	}
	return c.Name() + " [flags]"
}

const helpTemplate = `{{.UsageString}}`

const usageTemplate = `NAME:
	{{.Name}} - {{.Short}}

USAGE:
	{{ctlUseLine .}}
{{if .Long}}
DESCRIPTION:
{{.Long | trimTrailingWhitespaces | ctlIndent}}
{{end}}{{if not .HasParent}}
VERSION:
	{{ctlVersion}}
{{end}}{{if .HasAvailableSubCommands}}
COMMANDS:
{{range ctlCommands .}}	{{index . 0 | printf "%-24s"}}{{index . 1}}
{{end}}{{end}}{{if .HasAvailableLocalFlags}}
OPTIONS:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}
{{end}}{{if .HasAvailableInheritedFlags}}
GLOBAL OPTIONS:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}
{{end}}`

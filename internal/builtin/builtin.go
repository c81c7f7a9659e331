// Package builtin is the one table of the source plugins xdsbridge ships:
// the types plugins.yaml accepts in a plugin's type key, and the plugin
// `xdsbridge plugin TYPE` serves for each.
package builtin

import (
	"github.com/xdsbridge/xdsbridge/plugins/consul"
	"github.com/xdsbridge/xdsbridge/plugins/dns"
	"github.com/xdsbridge/xdsbridge/plugins/static"
	"github.com/xdsbridge/xdsbridge/sdk"
)

type entry struct {
	typ    string
	plugin func(version string) sdk.Plugin
}

// table lists the built-in plugins, sorted by type.
func table() []entry {
	return []entry{
		{"consul", consul.Plugin},
		{"dns", dns.Plugin},
		{"static", static.Plugin},
	}
}

// Types returns the built-in plugin types, sorted.
func Types() []string {
	t := table()
	out := make([]string, len(t))
	for i, e := range t {
		out[i] = e.typ
	}
	return out
}

// Plugin returns the built-in plugin of type typ, reporting version as its
// own; ok is false when there is none.
func Plugin(typ, version string) (p sdk.Plugin, ok bool) {
	for _, e := range table() {
		if e.typ == typ {
			return e.plugin(version), true
		}
	}
	return sdk.Plugin{}, false
}

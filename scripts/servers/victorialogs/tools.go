//go:build tools

// Package tools only anchors the VictoriaLogs server in this build module.
// scripts/servers/up.sh runs, in this folder:
//
//	CGO_ENABLED=0 go build -trimpath -o <cache>/victoria-logs \
//	  github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
//
// Why a wrapper module instead of `go install ...@version`: the module proxy
// this project can reach serves VictoriaLogs only at the pseudo-version below,
// and the VictoriaMetrics library version that VictoriaLogs' own go.mod asks
// for is not served ("403 ... not available"). go.mod here raises it to a
// served release (v1.148.8), and go.sum pins the whole graph.
package tools

import _ "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs"

// Package systemd holds spot-agent's systemd unit, the one file that the
// packages ship, the release archives carry and `spot-agent install` writes.
package systemd

import (
	_ "embed" // for the unit file
)

// UnitName is the name of the unit the packages install.
const UnitName = "spot-agent.service"

//go:embed spot-agent.service
var unit []byte

// Unit returns a copy of the unit file, so that no caller can change what the
// next one gets.
func Unit() []byte { return append([]byte(nil), unit...) }

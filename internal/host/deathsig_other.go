//go:build !linux

package host

import "os/exec"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal: there the SDK's watchdog (the parent pid changes, or the process
// wire.EnvHostPID names is gone) ends the plugin.
func setParentDeathSignal(*exec.Cmd) {}

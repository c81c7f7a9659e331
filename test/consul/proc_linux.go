package consul

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the agent die with the test process, so a test binary
// killed by a timeout leaves no agent behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

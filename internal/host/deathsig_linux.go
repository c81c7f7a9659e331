package host

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel SIGKILL the plugin when the host
// dies, however it dies (a crash, the OOM killer, kill -9), so that no
// plugin outlives its host. SIGKILL rather than SIGTERM: a host that is gone
// reads nothing more from the plugin, and a plugin in any language that
// ignores SIGTERM still goes.
//
// The kernel sends the signal when the thread that started the child exits.
// Go keeps its threads for the life of the process unless a goroutine
// locked to one (runtime.LockOSThread) returns, which nothing that starts
// plugins does. A host that dies before the child has set the signal is
// handled by the syscall package: right after setting it, the child
// compares its parent pid with the one it forked from and signals itself
// when they differ. A plugin started through a wrapper (a shell script) is
// the wrapper's child, not ours: the SDK's watchdog, which watches the
// process wire.EnvHostPID names, ends it.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

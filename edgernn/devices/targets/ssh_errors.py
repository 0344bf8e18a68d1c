"""
What went wrong in an ssh or remote tar call, as one line saying what to do: a crash of the remote
process (SIGILL, SIGSEGV), refused auth, an unknown host key, an unreachable host, a lost connection,
a full or read-only remote disk. Only reads the client's stderr and exit code; runs nothing.

    proc = subprocess.run(ssh_argv, capture_output=True)
    if proc.returncode != 0:
        raise ssh_failure("pi@raspberrypi.local", proc, "copying files")   # -> TargetError
    tar_error(stderr_text)      # tar's first real error, not "Exiting with failure status ..."
"""

from __future__ import annotations

from edgernn.devices.targets import last_line
from edgernn.errors import TargetError

CONNECT_ERRORS = ("Connection refused", "No route to host", "Connection timed out", "Could not resolve hostname",
                  "Name or service not known", "Network is unreachable", "Operation timed out",
                  "Temporary failure in name resolution", "Connection closed by remote host",
                  "kex_exchange_identification", "Connection reset by peer")
CRASHES = ("Illegal instruction", "Segmentation fault", "Bus error", "uncaught target signal", "core dumped")
AUTH_ERRORS = ("Permission denied", "Too many authentication failures", "no mutual signature",
               "No supported authentication methods")
FILE_ERRORS = ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded",
               "Cannot open", "Cannot mkdir")


def tar_error(text: str) -> str:
    """tar ends with "Exiting with failure status due to previous errors": report the first real error."""
    lines = [ln.strip() for ln in (text or "").replace("\r", "").splitlines() if ln.strip()]
    for ln in lines:
        if any(e in ln for e in FILE_ERRORS):
            return ln
    useful = [ln for ln in lines if "Exiting with failure status" not in ln]
    return (useful or lines or ["no error output"])[0]


def ssh_failure(host: str, proc, what: str) -> TargetError:
    """The TargetError for a failed ssh call `proc` (a CompletedProcess) that was doing `what` on `host`."""
    err = proc.stderr.decode("utf-8", "replace") if isinstance(proc.stderr, bytes) else (proc.stderr or "")
    line = last_line(err)
    if any(c in err for c in CRASHES):  # the remote process died of a signal: ssh also exits 255
        return TargetError(
            f"{what} crashed on {host} ({line}): the runtime died of a signal there - SIGILL means it ran "
            "an instruction this CPU lacks (on an emulated board: /proc/cpuinfo and QEMU_CPU disagree), "
            "SIGSEGV a runtime bug; re-run that artifact alone to confirm")
    if proc.returncode == 255:
        if any(s in err for s in AUTH_ERRORS):
            return TargetError(
                f"ssh to {host} was refused ({line}): install your public key on the device "
                f"(ssh-copy-id {host}) so that `ssh {host} true` works without a password prompt "
                "- edgernn runs ssh in BatchMode and never asks for one")
        if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION HAS CHANGED" in err:
            return TargetError(
                f"the host key of {host} is unknown or has changed ({line}): run `ssh {host}` once "
                "interactively to accept it, or fix ~/.ssh/known_hosts")
        if any(s in err for s in CONNECT_ERRORS):
            return TargetError(
                f"cannot reach {host} ({line}): check the address, that the device is powered and on "
                f"the network and that sshd runs on it; `ssh {host} true` must work")
        return TargetError(f"the ssh connection to {host} failed or was lost during {what} "
                           f"({line or 'ssh exit code 255'}); check the device and the network and re-run")
    return TargetError(f"{what} failed on {host} (exit code {proc.returncode}): {line or 'no error output'}")

"""A seccomp filter for a job's process: nothing that reaches another process or the kernel's
shared state.

Standard library only (this runs inside the sandbox). A job runs as the same uid as its
worker, and the kernel lets a process of one uid change another's resource limits,
priority, CPU affinity and scheduling, and share that uid's keyrings; none of that needs
ptrace rights, so the worker's being undumpable does not stop it. The filter, installed
in the job's process before the program runs and inherited by everything it starts,
refuses those calls when they name another process (``pid`` 0 means the caller and stays
allowed, so ``resource.setrlimit`` and ``os.nice`` work), and refuses outright what no
program under test needs: ptrace and cross-process memory, keyrings, namespaces and
mounts, modules, kexec, BPF, perf and userfaultfd. Refused calls fail with EPERM.
"""

from __future__ import annotations

import ctypes
import platform
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
RET_ALLOW = 0x7FFF0000
RET_EPERM = 0x00050000 | 1
# BPF opcodes: load a word at an absolute offset, jump if equal / greater-or-equal, return.
LD_ABS = 0x20
JEQ = 0x15
JGE = 0x35
RET = 0x06
#: Offsets in struct seccomp_data: nr, arch, then six 64-bit arguments from 16.
NR, ARCH, ARGS = 0, 4, 16
X32_BIT = 0x40000000

#: Refused outright.
_DENY = (
    *("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp"),
    *("process_madvise", "move_pages", "migrate_pages", "add_key", "request_key", "keyctl"),
    *("unshare", "setns", "mount", "umount2", "pivot_root", "open_tree", "move_mount"),
    *("fsopen", "fsmount", "fspick", "init_module", "finit_module", "delete_module"),
    *("kexec_load", "kexec_file_load", "bpf", "perf_event_open", "userfaultfd", "acct"),
    *("swapon", "swapoff", "reboot", "syslog", "quotactl"),
)
#: Allowed only for the caller itself: {call: index of its pid (or "who") argument}.
_OWN = {
    "prlimit64": 0,
    "setpriority": 1,
    "ioprio_set": 1,
    "sched_setaffinity": 0,
    "sched_setscheduler": 0,
    "sched_setparam": 0,
    "sched_setattr": 0,
}


def _table(pairs: str) -> dict[str, int]:
    words = pairs.split()
    return dict(zip(words[::2], map(int, words[1::2]), strict=True))


#: Audit architecture and syscall numbers (from the kernel's unistd headers).
_TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        _table(
            "ptrace 101 syslog 103 setpriority 141 sched_setparam 142 sched_setscheduler 144 "
            "pivot_root 155 acct 163 mount 165 umount2 166 swapon 167 swapoff 168 reboot 169 "
            "init_module 175 delete_module 176 quotactl 179 sched_setaffinity 203 "
            "kexec_load 246 add_key 248 request_key 249 keyctl 250 ioprio_set 251 "
            "migrate_pages 256 unshare 272 move_pages 279 perf_event_open 298 prlimit64 302 "
            "setns 308 process_vm_readv 310 process_vm_writev 311 kcmp 312 finit_module 313 "
            "sched_setattr 314 kexec_file_load 320 bpf 321 userfaultfd 323 open_tree 428 "
            "move_mount 429 fsopen 430 fsmount 432 fspick 433 pidfd_getfd 438 "
            "process_madvise 440"
        ),
    ),
    "aarch64": (
        0xC00000B7,
        _table(
            "ioprio_set 30 umount2 39 mount 40 pivot_root 41 quotactl 60 acct 89 unshare 97 "
            "kexec_load 104 init_module 105 delete_module 106 syslog 116 ptrace 117 "
            "sched_setparam 118 sched_setscheduler 119 sched_setaffinity 122 setpriority 140 "
            "reboot 142 add_key 217 request_key 218 keyctl 219 swapon 224 swapoff 225 "
            "migrate_pages 238 move_pages 239 perf_event_open 241 prlimit64 261 setns 268 "
            "process_vm_readv 270 process_vm_writev 271 kcmp 272 finit_module 273 "
            "sched_setattr 274 bpf 280 userfaultfd 282 kexec_file_load 294 open_tree 428 "
            "move_mount 429 fsopen 430 fsmount 432 fspick 433 pidfd_getfd 438 "
            "process_madvise 440"
        ),
    ),
}

Instruction = tuple[int, int, int, int]


def program(machine: str) -> list[Instruction] | None:
    """The filter as BPF instructions for ``machine`` (None where we have no table)."""
    if machine not in _TABLES:
        return None
    arch, numbers = _TABLES[machine]
    body: list[tuple[int, object, object, int]] = [
        (LD_ABS, 0, 0, ARCH),
        (JEQ, 0, "deny", arch),  # another ABI (int 0x80 on x86_64, say): refused
        (LD_ABS, 0, 0, NR),
    ]
    if machine == "x86_64":
        body.append((JGE, "deny", 0, X32_BIT))
    body += [(JEQ, "deny", 0, numbers[name]) for name in _DENY]
    for name, index in _OWN.items():
        low, high = ARGS + 8 * index, ARGS + 8 * index + 4  # little-endian halves
        body += [
            (JEQ, 0, 4, numbers[name]),  # not this call: on to the next rule
            (LD_ABS, 0, 0, low),
            (JEQ, 0, "deny", 0),
            (LD_ABS, 0, 0, high),
            (JEQ, "allow", "deny", 0),
        ]
    body += [(RET, 0, 0, RET_ALLOW), (RET, 0, 0, RET_EPERM)]
    where = {"allow": len(body) - 2, "deny": len(body) - 1}

    def offset(target: object, at: int) -> int:
        return where[target] - at - 1 if isinstance(target, str) else int(str(target))

    return [(code, offset(jt, i), offset(jf, i), k) for i, (code, jt, jf, k) in enumerate(body)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PREPARED: list[tuple[_Program, ctypes.Array[ctypes.c_char], ctypes.CDLL] | None] = []


def prepare() -> None:
    """Build the filter and resolve ``prctl`` once, in the worker, so that each job's
    forked process only installs it (building it there cost most of a millisecond)."""
    if _PREPARED:
        return
    instructions = program(platform.machine())
    if instructions is None:
        _PREPARED.append(None)
        return
    code = b"".join(struct.pack("=HBBI", *ins) for ins in instructions)
    buffer = ctypes.create_string_buffer(code, len(code))
    prog = _Program(len(instructions), ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl  # noqa: B018  (resolved here, inherited by every fork)
    _PREPARED.append((prog, buffer, libc))


def install() -> bool:
    """Install the filter in this process (and all it starts); False where unsupported."""
    prepare()
    prepared = _PREPARED[0]
    if prepared is None:
        return False
    prog, _, libc = prepared
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return bool(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0)

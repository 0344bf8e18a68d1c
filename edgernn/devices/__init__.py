"""
Devices: where artifacts run besides this machine, and how to reach them.

    boards.py        board profiles (boards/*.toml: Raspberry Pis, an Android phone, this desktop)
    targets/         one transport each: local (this machine), ssh (a Pi), adb (a phone)
    open.py          opening a board's target, or an emulated one, for bench and parity
    emulated_pi/     an arm64 Debian rootfs under qemu-user with its own sshd: a Pi without a Pi (host set-up,
                     cache, rootfs build, the running emulator); emulated microcontrollers (bare metal under
                     qemu-system-arm) will be a sibling package
    compilers.py     C artifacts built for other machines (compile checks, Cortex-M size, cross libraries)

Nothing here imports export, parity or training code: devices sit just above the runtimes they carry.
"""

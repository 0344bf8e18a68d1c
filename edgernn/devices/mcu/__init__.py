"""
Microcontrollers, emulated: C artifacts cross-compiled bare metal for a Cortex-M core and run under
qemu-system-arm (no root, no rootfs: seconds), with exact instruction counts, measured stack and the
flash/RAM of the linked firmware. `edgernn parity|bench RUN --target cortex-m4 --emulate` use it through
edgernn.mcu_parity and edgernn.mcu_bench.

    cores.py     the emulated cores (QEMU board, memory map, compiler flags) and the tool check
    firmware.py  start-up code, linker script, the harness around one artifact; the host twin
    token_firmware.py  the harness around a token C library (edgernn.tokens.mcu: encoder-decoders, next-token)
    emulator.py  one job through qemu (time limit, faults) or through the host twin
    session.py   McuSession: predict() / stream_outputs() on the MCU, compared with the host each call
"""

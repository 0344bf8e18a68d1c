"""
Dependency-free C99 export (edgernn.export.formats names the exporter):

    export.py   the exporter: the int8 quantizer, a numpy simulator of the integer C, checks, manifest
    source.py   the header-only C source (float and int8 kernels, weights as const tables)
Builds for other machines (compile checks, Cortex-M size, cross libraries) are edgernn.devices.compilers.
"""

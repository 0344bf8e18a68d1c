"""
Dependency-free C99 export (edgernn.export.formats names the exporter):

    export.py     the exporter: weights out of the torch model, the generator's Spec, compile-and-run check,
                  manifest (int8 goes through recipes.builder("int16x8", "c"))
    quantize.py   the int8 recipe int16x8: int8 weights per row, int16 state formats, fixed-point multipliers
    simulate.py   the float model in numpy, streamed as a device runs it: what int8 calibration measures
    source.py     the header-only C source: the public API (header, state, reset/step/run), assembled from
    tables.py     the const data (weights, int8 scales, sigmoid/tanh tables) and
    kernels.py    the arithmetic (sigmoid/tanh, matvec, one cell step, the head), float and int8

    path = export_c(run, out_dir, "int8", "step", ExportOptions())   # from edgernn.export.c.export
Builds for other machines (compile checks, Cortex-M size, cross libraries) are edgernn.devices.compilers.
"""

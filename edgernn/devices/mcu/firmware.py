"""
Bare-metal firmware around one C artifact: cross-compiled for a Cortex-M core (arm-none-eabi-gcc, newlib's
semihosting for file I/O, a linker script for the emulated board), and the same harness built for this
machine, so the MCU's outputs are compared with the host's from identical source.

    fw = build(Path("step-int8.h"), manifest, CORES["cortex-m4"], Path("work"))   # -> Firmware
    fw.elf, fw.host, fw.sizes       # ELF for qemu, host executable, flash/RAM from the linked ELF

The harness reads its job from job.bin in its working directory (qemu's, through semihosting):

    int32 magic 'EDRN', int32 op, int32 count
    op 1 (windows, P_run):  count x (int32 T, float32 x[T][CHANNELS])  -> outputs[K] (tagger: [T][K])
    op 2 (stream, P_step):  count x (int32 reset, float32 frame[CHANNELS]) -> outputs[K] per frame;
                            reset != 0 zeroes the state before that frame

and writes float32 outputs to out.bin. It times only the model calls with SysTick, which under
qemu's `-icount shift=0` counts instructions exactly (calibrated at start with a loop of known length),
and measures the model's stack by painting the stack below the call and finding the deepest word
written. Its last stdout line is `EDGERNN {json}`. A fault prints `EDGERNN-FAULT ...` and exits 70.
Both builds use -std=c99 -O2 -ffp-contract=off: no fused multiply-add on either side, so float
arithmetic is the same IEEE operations in the same order and an int8 artifact's outputs must be
bit-identical on both. Token models have their own main() (edgernn.devices.mcu.token_firmware) around the
same TIMING and CALIBRATE code, built by build(..., harness=...).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgernn.devices.mcu.cores import Core, check_tools
from edgernn.errors import ArtifactError

MAGIC = 0x4E524445  # "EDRN" little-endian
OP_WINDOWS, OP_STREAM = 1, 2
CHUNK = 64  # stream frames read (and written) per semihosting call
PAINT_BYTES = 128 << 10  # stack painted below each model call: the deepest a bidirectional model needs is ~51 KB
OPT = ("-std=c99", "-O2", "-ffp-contract=off")
FAULT_EXIT = 70

STARTUP = r"""/* edgernn bare-metal start-up: vector table, .data/.bss, FPU, semihosting, SysTick wrap counter */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
extern uint32_t __StackTop, __etext, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern int main(void);
extern void initialise_monitor_handles(void);
void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void);
volatile uint32_t edgernn_systick_wraps;
void SysTick_Handler(void) { edgernn_systick_wraps++; }
static const char *const edgernn_fault_names[16] = {"?", "?", "NMI", "HardFault", "MemManage", "BusFault",
    "UsageFault", "SecureFault", "?", "?", "?", "SVCall", "DebugMonitor", "?", "PendSV", "SysTick"};
void Fault_Handler(void)
{
    uint32_t ipsr, cfsr = *(volatile uint32_t *)0xE000ED28;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    printf("EDGERNN-FAULT %s CFSR=0x%08lx HFSR=0x%08lx", edgernn_fault_names[ipsr & 15], (unsigned long)cfsr,
           (unsigned long)*(volatile uint32_t *)0xE000ED2C);
    if (cfsr & 0x8000u) /* BFARVALID: the address of a precise bus fault */
        printf(" at address 0x%08lx", (unsigned long)*(volatile uint32_t *)0xE000ED38);
    else if (cfsr & 0x80u) /* MMARVALID */
        printf(" at address 0x%08lx", (unsigned long)*(volatile uint32_t *)0xE000ED34);
    printf("\n");
    exit(70);
}
__attribute__((section(".vectors"), used)) static const void *const edgernn_vectors[16] = {
    &__StackTop, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler};
void _init(void) {}
void _fini(void) {}
void Reset_Handler(void)
{
    uint32_t *src = &__etext, *dst;
    for (dst = &__data_start__; dst < &__data_end__;)
        *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;)
        *dst++ = 0;
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: CP10/CP11 full access, else the first float faults */
    __asm__ volatile("dsb\n isb");
#endif
    *(volatile uint32_t *)0xE000ED24 |= 7u << 16; /* SHCSR: MemManage/BusFault/UsageFault report as themselves */
    initialise_monitor_handles();
    exit(main());
}
"""

LINKER = """/* edgernn: {machine} ({core}) */
MEMORY {{ FLASH (rx) : ORIGIN = 0x{f0:08x}, LENGTH = {fl}
         RAM (rwx) : ORIGIN = 0x{r0:08x}, LENGTH = {rl} }}
ENTRY(Reset_Handler)
SECTIONS {{
  .text : {{ KEEP(*(.vectors)) *(.text*) KEEP(*(.init)) KEEP(*(.fini)) . = ALIGN(4); }} > FLASH
  .rodata : {{ *(.rodata*) . = ALIGN(4); }} > FLASH
  .ARM.extab : {{ *(.ARM.extab* .gnu.linkonce.armextab.*) }} > FLASH
  .ARM.exidx : {{ __exidx_start = .; *(.ARM.exidx* .gnu.linkonce.armexidx.*) __exidx_end = .; }} > FLASH
  . = ALIGN(4);
  __etext = .;
  .data : AT(__etext) {{ __data_start__ = .; *(.data*) . = ALIGN(4); __data_end__ = .; }} > RAM
  .bss (NOLOAD) : {{ __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end__ = .; }} > RAM
  end = .; __end__ = .;
  __StackTop = ORIGIN(RAM) + LENGTH(RAM);
  __stack = __StackTop;
}}
"""


# shared by every harness (edgernn.devices.mcu.token_firmware too): the SysTick clock, the stack pointer, stack
# painting; needs EDGERNN_PAINT / EDGERNN_PATTERN defined before it
TIMING = r"""#if defined(__arm__)
extern volatile uint32_t edgernn_systick_wraps;
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
static uint64_t edgernn_now(void)
{
    uint32_t w, v;
    do {
        w = edgernn_systick_wraps;
        v = SYST_CVR;
    } while (w != edgernn_systick_wraps);
    return (uint64_t)w * 0x1000000u + (0xFFFFFFu - v);
}
static uint32_t edgernn_sp(void)
{
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}
/* the stack from sp - EDGERNN_PAINT up to sp - 64 gets a pattern; after the call, the lowest word changed
   is the deepest the call reached (this function's own frame lies above sp - 64) */
static void edgernn_paint(uint32_t sp)
{
    volatile uint32_t *w = (volatile uint32_t *)(sp - EDGERNN_PAINT);
    while ((uint32_t)w < sp - 64u)
        *w++ = EDGERNN_PATTERN;
}
static uint32_t edgernn_depth(uint32_t sp)
{
    volatile uint32_t *w = (volatile uint32_t *)(sp - EDGERNN_PAINT);
    while ((uint32_t)w < sp - 64u && *w == EDGERNN_PATTERN)
        w++;
    return sp - (uint32_t)w;
}
#else
static uint64_t edgernn_now(void) { return 0; }
static uint32_t edgernn_sp(void) { return 0; }
static void edgernn_paint(uint32_t sp) { (void)sp; }
static uint32_t edgernn_depth(uint32_t sp) { (void)sp; return 0; }
#endif
"""

# main()'s SysTick start and calibration; needs `uint64_t t0, t1, cal; volatile uint32_t loops = 100000u;`
CALIBRATE = r"""#if defined(__arm__)
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 7u; /* processor clock, wrap interrupt, enabled */
    while (SYST_CVR == 0) { }
    { /* instructions per SysTick tick: 2 x loops instructions (subs + bne) */
        uint32_t k = loops;
        t0 = edgernn_now();
        __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(k));
        cal = edgernn_now() - t0;
    }
    t0 = edgernn_now();
    t1 = edgernn_now();
    printf("EDGERNN-CAL %lu %lu %lu\n", (unsigned long)(2u * loops), (unsigned long)cal, (unsigned long)(t1 - t0));
#else
    (void)cal;
    (void)loops;
#endif
"""


def harness_source(manifest: dict) -> str:
    """main(): the job file in, outputs out, instruction count and stack of the model calls on stdout."""
    c = manifest["c"]
    p, P = c["prefix"], c["prefix"].upper()
    tag = manifest["task"] == "tag"
    streaming = bool(c.get("streaming"))  # a bidirectional model has P_run only: no state type
    step = streaming and manifest["mode"] == "step"
    state_decl = f"    {p}_state st;\n" if streaming else ""
    state_reset = f"    {p}_reset(&st);\n" if streaming else ""
    state_size = f"sizeof({p}_state)" if streaming else "0"
    return f"""/* edgernn MCU harness for {p} ({manifest['mode']}, {manifest['precision']}) */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#define {P}_IMPLEMENTATION
#include "model.h"

#define EDGERNN_MAX_T {P}_SEQUENCE_LENGTH /* windows longer than training's are refused */
#define EDGERNN_CHUNK {CHUNK}
#define EDGERNN_PAINT {PAINT_BYTES}u
#define EDGERNN_PATTERN 0xC5A5C5A5u
static float edgernn_in[(EDGERNN_MAX_T > EDGERNN_CHUNK ? EDGERNN_MAX_T : EDGERNN_CHUNK) * {P}_CHANNELS];
static int32_t edgernn_resets[EDGERNN_CHUNK];
static float edgernn_out[(EDGERNN_MAX_T > EDGERNN_CHUNK ? EDGERNN_MAX_T : EDGERNN_CHUNK) * {P}_OUTPUTS];

{TIMING}
static uint64_t edgernn_ticks, edgernn_min = (uint64_t)-1, edgernn_max;
static uint32_t edgernn_stack;

static void edgernn_account(uint64_t t0, uint64_t t1, long calls)
{{
    uint64_t d = (t1 - t0) / (uint64_t)calls;
    edgernn_ticks += t1 - t0;
    if (d < edgernn_min)
        edgernn_min = d;
    if (d > edgernn_max)
        edgernn_max = d;
}}

static int edgernn_fail(const char *what)
{{
    printf("EDGERNN-ERROR %s\\n", what);
    return 2;
}}

int main(void)
{{
    int32_t head[3];
    long n, done = 0;
    uint32_t sp, depth;
    uint64_t t0, t1, cal;
    volatile uint32_t loops = 100000u;
    FILE *fi, *fo;
{state_decl}    fi = fopen("job.bin", "rb");
    fo = fopen("out.bin", "wb");
    if (!fi || !fo || fread(head, 4, 3, fi) != 3 || head[0] != {MAGIC}L)
        return edgernn_fail("cannot read the job file");
{CALIBRATE}    depth = 0;
    n = head[2];
{state_reset}    if (head[1] == {OP_WINDOWS}) {{
        while (done < n) {{
            int32_t T;
            if (fread(&T, 4, 1, fi) != 1 || T < 1 || T > EDGERNN_MAX_T)
                return edgernn_fail("bad window length");
            if (fread(edgernn_in, 4 * {P}_CHANNELS, (size_t)T, fi) != (size_t)T)
                return edgernn_fail("short window");
            sp = edgernn_sp();
            if (done == 0)
                edgernn_paint(sp);
            t0 = edgernn_now();
            if ({p}_run(edgernn_in, (int)T, edgernn_out))
                return edgernn_fail("run refused a window");
            t1 = edgernn_now();
            if (done == 0)
                depth = edgernn_depth(sp);
            edgernn_account(t0, t1, 1);
            fwrite(edgernn_out, 4, (size_t)({"T * " + P + "_OUTPUTS" if tag else P + "_OUTPUTS"}), fo);
            done++;
        }}
    }}
{_stream_block(p, P) if step else ''}    else
        return edgernn_fail("this artifact has no such operation");
    fclose(fo);
    fclose(fi);
    printf("EDGERNN calls=%ld ticks_hi=%lu ticks_lo=%lu min_ticks=%lu max_ticks=%lu stack_bytes=%lu "
           "state_bytes=%lu\\n", done, (unsigned long)(edgernn_ticks >> 32), (unsigned long)(edgernn_ticks & 0xFFFFFFFFu),
           (unsigned long)(done ? edgernn_min : 0), (unsigned long)edgernn_max, (unsigned long)depth,
           (unsigned long){state_size});
    return 0;
}}
"""


def _stream_block(p: str, P: str) -> str:
    return f"""    else if (head[1] == {OP_STREAM}) {{
        while (done < n) {{
            long k, m = n - done < EDGERNN_CHUNK ? n - done : EDGERNN_CHUNK;
            for (k = 0; k < m; k++)
                if (fread(&edgernn_resets[k], 4, 1, fi) != 1 ||
                    fread(edgernn_in + k * {P}_CHANNELS, 4 * {P}_CHANNELS, 1, fi) != 1)
                    return edgernn_fail("short stream");
            sp = edgernn_sp();
            if (done == 0)
                edgernn_paint(sp);
            t0 = edgernn_now();
            for (k = 0; k < m; k++) {{
                if (edgernn_resets[k])
                    {p}_reset(&st);
                {p}_step(&st, edgernn_in + k * {P}_CHANNELS, edgernn_out + k * {P}_OUTPUTS);
            }}
            t1 = edgernn_now();
            if (done == 0)
                depth = edgernn_depth(sp);
            edgernn_account(t0, t1, m);
            fwrite(edgernn_out, 4 * {P}_OUTPUTS, (size_t)m, fo);
            done += m;
        }}
    }}
"""


@dataclass
class Firmware:
    elf: Path
    host: Path
    core: Core
    sizes: dict = field(default_factory=dict)  # the linked ELF and the model's own object (see elf_sizes)
    flags: str = ""


def _run(cmd: list, what: str, cwd: Path) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    if proc.returncode != 0:
        err = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[:300])
        raise ArtifactError(f"{what} does not build ({err}); generated code should always build: please report this")


def section_sizes(size_exe: str, path: Path) -> dict:
    """{section: bytes} from `arm-none-eabi-size -A`."""
    out = subprocess.run([size_exe, "-A", str(path)], capture_output=True, text=True, timeout=60).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def model_sizes(sections: dict) -> dict:
    """code / const / data / bss of the model's own object (-ffunction-sections splits them by name)."""
    pick = lambda pre: sum(v for k, v in sections.items() if k == pre or k.startswith(pre + "."))  # noqa: E731
    return {"code": pick(".text"), "const": pick(".rodata"), "data": pick(".data"), "bss": pick(".bss")}


def build(header: Path, manifest: dict, core: Core, work: Path, harness: str | None = None) -> Firmware:
    """Build the firmware (cached in `work` by the artifact's sha256, the core, the harness and this module's source);
    harness: another main() than harness_source(manifest)'s (token models: edgernn.devices.mcu.token_firmware)."""
    tools = check_tools()
    from edgernn.runtimes.c_backend import find_compiler

    harness = harness_source(manifest) if harness is None else harness
    key = hashlib.sha256("\n".join([manifest["sha256"], core.name, " ".join(core.flags), STARTUP,
                                    harness, Path(__file__).read_text()]).encode()).hexdigest()[:16]
    out = Path(work) / f"{Path(header).stem}-{core.name}-{key}"
    elf, host = out / "firmware.elf", out / "host"
    if elf.is_file() and host.is_file() and (out / "sizes.txt").is_file():
        import json

        return Firmware(elf, host, core, json.loads((out / "sizes.txt").read_text()), " ".join(OPT + core.flags))
    part = out.with_name(out.name + f".part{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    try:
        shutil.copyfile(header, part / "model.h")
        (part / "harness.c").write_text(harness)
        (part / "startup.c").write_text(STARTUP)
        (part / "link.ld").write_text(LINKER.format(machine=core.machine, core=core.name, f0=core.flash[0],
                                                    fl=core.flash[1], r0=core.ram[0], rl=core.ram[1]))
        gcc = [tools["gcc"], *OPT, *core.flags, "-ffunction-sections", "-fdata-sections"]
        name = Path(header).name
        # the model alone (its own object: its code, constants and statics, apart from newlib's)
        P = manifest["c"]["prefix"].upper()
        (part / "model.c").write_text(f'#define {P}_IMPLEMENTATION\n#include "model.h"\n')
        _run([*gcc, "-c", "-o", "model.o", "model.c"], f"{name} for {core.name}", part)
        _run([*gcc, "-nostartfiles", "--specs=rdimon.specs", "-T", "link.ld", "-Wl,--gc-sections",
              "-o", "firmware.elf", "startup.c", "harness.c"], f"the {core.name} firmware of {name}", part)
        _run([find_compiler(), *OPT, "-o", "host", "harness.c"], f"the host harness of {name}", part)
        elf_sections = section_sizes(tools["size"], part / "firmware.elf")
        sizes = {"model": model_sizes(section_sizes(tools["size"], part / "model.o")),
                 "firmware": {"code": elf_sections.get(".text", 0), "const": elf_sections.get(".rodata", 0),
                              "data": elf_sections.get(".data", 0), "bss": elf_sections.get(".bss", 0)}}
        import json

        (part / "sizes.txt").write_text(json.dumps(sizes))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(part, out)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return Firmware(elf, host, core, sizes, " ".join(OPT + core.flags))

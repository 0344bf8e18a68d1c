/* A microcontroller main loop: a sensor interrupt fills frames, the main loop runs the model.
 *   edgernn export runs/gru --format c --precision int8 --streaming --c-prefix model
 *   cp runs/gru/artifacts/step-int8.h model.h
 *   arm-none-eabi-gcc -std=c99 -Wall -Wextra -Werror -pedantic -mcpu=cortex-m4 -mthumb \
 *       -mfloat-abi=hard -mfpu=fpv4-sp-d16 -Os -c -I . mcu_main.c
 * Link the object with your board's startup code, linker script and HAL. Your board code defines
 * sensor_read(), on_window() and wait_for_interrupt(), and calls sensor_isr() from the sensor's
 * data-ready (or timer) interrupt. The weak versions at the end only make this file build alone.
 * With an int8 header the loop calls model_step_q (integer only); with a float header (step-float.h),
 * or with -DUSE_FLOAT_STEP, it calls model_step on raw float frames. */
#include <stdint.h>
#define MODEL_IMPLEMENTATION /* in exactly one .c file */
#include "model.h"

#if defined(MODEL_OUTPUT_SCALE) && !defined(USE_FLOAT_STEP)
#define INT_PATH 1
typedef int16_t sample_t; /* a frame as model_quantize_frame writes it */
typedef int32_t score_t;  /* Q16: value = score * MODEL_OUTPUT_SCALE */
#else
#define INT_PATH 0
typedef float sample_t;   /* a raw frame */
typedef float score_t;
#endif

#define RING 8u /* frames the interrupt may run ahead of the main loop */

void sensor_read(float *frame);          /* board: one raw frame of MODEL_CHANNELS values, in training units */
void on_window(int label, score_t score); /* board: act on a result (LED, radio, log) */
void wait_for_interrupt(void);           /* board: __WFI() */
void sensor_isr(void);

static volatile sample_t ring[RING][MODEL_CHANNELS];
static volatile uint32_t head;    /* frames written; only the interrupt changes it */
static volatile uint32_t tail;    /* frames consumed; only the main loop changes it */
static volatile uint32_t dropped; /* frames lost because the main loop fell behind */

void sensor_isr(void)
{
    const uint32_t h = head;
    float raw[MODEL_CHANNELS];
    int c;
    if (h - tail >= RING) {
        dropped++;
        return;
    }
    sensor_read(raw);
#if INT_PATH
    {
        int16_t q[MODEL_CHANNELS];
        model_quantize_frame(raw, q); /* normalize + quantize: a few float operations per channel */
        for (c = 0; c < MODEL_CHANNELS; c++)
            ring[h % RING][c] = q[c];
    }
#else
    for (c = 0; c < MODEL_CHANNELS; c++)
        ring[h % RING][c] = raw[c];
#endif
    head = h + 1; /* publish the frame after it is written */
}

int main(void)
{
    static model_state st; /* static: in .bss, not on the stack; one per independent stream */
    sample_t frame[MODEL_CHANNELS];
    score_t out[MODEL_OUTPUTS];
    uint32_t n = 0;
    int c, k, best;

    model_reset(&st);
    for (;;) {
        const uint32_t t = tail;
        if (t == head) {
            wait_for_interrupt(); /* sleep until the next frame */
            continue;
        }
        for (c = 0; c < MODEL_CHANNELS; c++)
            frame[c] = ring[t % RING][c];
        tail = t + 1;
#if INT_PATH
        model_step_q(&st, frame, out); /* integer only */
#else
        model_step(&st, frame, out);
#endif
        if (++n == MODEL_SEQUENCE_LENGTH) { /* one training-length window: report, start the next */
            best = 0;
            for (k = 1; k < MODEL_OUTPUTS; k++) /* one scale for all outputs: argmax works on Q16 */
                if (out[k] > out[best])
                    best = k;
            on_window(best, out[best]);
            model_reset(&st);
            n = 0;
        }
    }
}

/* ---- placeholders so this file compiles and links alone; the board's definitions replace them ---- */
#if defined(__GNUC__)
#define WEAK __attribute__((weak))
#else
#define WEAK
#endif

WEAK void sensor_read(float *frame)
{
    int c;
    for (c = 0; c < MODEL_CHANNELS; c++)
        frame[c] = 0.0f;
}

WEAK void on_window(int label, score_t score)
{
    (void)label;
    (void)score;
}

WEAK void wait_for_interrupt(void)
{
}

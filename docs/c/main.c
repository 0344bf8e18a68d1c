/* A plain C program that streams sensor frames through an exported model.
 *   edgernn export runs/gru --format c --precision float --streaming --c-prefix model
 *   cp runs/gru/artifacts/step-float.h model.h && cc -std=c99 -O2 -o kws main.c
 *   ./kws < frames.txt      (one frame per line: MODEL_CHANNELS numbers) */
#include <stdio.h>
#define MODEL_IMPLEMENTATION /* in exactly one .c file */
#include "model.h"

int main(void)
{
    model_state st;                  /* the caller owns the state: one per stream */
    float frame[MODEL_CHANNELS], out[MODEL_OUTPUTS];
    long n = 0;
    int c, k;
    model_reset(&st);
    for (;;) {
        for (c = 0; c < MODEL_CHANNELS; c++)
            if (scanf("%f", &frame[c]) != 1)
                return 0;
        model_step(&st, frame, out);  /* raw frame in, logits out */
        printf("%ld", n++);
        for (k = 0; k < MODEL_OUTPUTS; k++)
            printf(" %.6g", out[k]);
        printf("\n");
    }
}

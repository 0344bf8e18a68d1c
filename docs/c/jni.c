/* JNI glue for an Android app (NDK): one model_state per Java object.
 *   edgernn export runs/gru --format c --precision int8 --streaming --c-prefix model
 *   cp runs/gru/artifacts/step-int8.h app/src/main/cpp/model.h     (this file beside it)
 * Java side: com.example.kws.Model (docs/c.md). The state lives in a direct ByteBuffer that the
 * Java object allocates and owns (the garbage collector frees it), so this file allocates nothing.
 * The model has no global mutable state: Model objects on different threads run independently;
 * one object must not be stepped from two threads at once (the Java methods are synchronized). */
#include <jni.h>
#include <stdint.h>
#define MODEL_IMPLEMENTATION /* in exactly one .c file */
#include "model.h"

static void throw_iae(JNIEnv *env, const char *msg)
{
    jclass cls = (*env)->FindClass(env, "java/lang/IllegalArgumentException");
    if (cls != NULL)
        (*env)->ThrowNew(env, cls, msg);
}

/* the state inside a direct ByteBuffer, or NULL with an exception pending */
static model_state *state_of(JNIEnv *env, jobject buf)
{
    void *p = (*env)->GetDirectBufferAddress(env, buf);
    if (p == NULL || (*env)->GetDirectBufferCapacity(env, buf) < (jlong)sizeof(model_state)) {
        throw_iae(env, "state must be a direct ByteBuffer of stateBytes() bytes");
        return NULL;
    }
    if ((uintptr_t)p % sizeof(float) != 0) {
        throw_iae(env, "state buffer is not 4-byte aligned");
        return NULL;
    }
    return (model_state *)p;
}

JNIEXPORT jint JNICALL Java_com_example_kws_Model_stateBytes(JNIEnv *env, jclass cls)
{
    (void)env;
    (void)cls;
    return (jint)sizeof(model_state);
}

JNIEXPORT jint JNICALL Java_com_example_kws_Model_channels(JNIEnv *env, jclass cls)
{
    (void)env;
    (void)cls;
    return MODEL_CHANNELS;
}

JNIEXPORT jint JNICALL Java_com_example_kws_Model_outputs(JNIEnv *env, jclass cls)
{
    (void)env;
    (void)cls;
    return MODEL_OUTPUTS;
}

JNIEXPORT void JNICALL Java_com_example_kws_Model_nativeReset(JNIEnv *env, jclass cls, jobject state)
{
    model_state *st = state_of(env, state);
    (void)cls;
    if (st != NULL)
        model_reset(st);
}

/* frame: MODEL_CHANNELS raw values; out: MODEL_OUTPUTS floats, written after this frame */
JNIEXPORT void JNICALL Java_com_example_kws_Model_nativeStep(JNIEnv *env, jclass cls, jobject state,
                                                            jfloatArray frame, jfloatArray out)
{
    float x[MODEL_CHANNELS], y[MODEL_OUTPUTS];
    model_state *st = state_of(env, state);
    (void)cls;
    if (st == NULL)
        return;
    if ((*env)->GetArrayLength(env, frame) != MODEL_CHANNELS || (*env)->GetArrayLength(env, out) != MODEL_OUTPUTS) {
        throw_iae(env, "frame must hold channels() values and out outputs() values");
        return;
    }
    (*env)->GetFloatArrayRegion(env, frame, 0, MODEL_CHANNELS, x); /* copies: a few floats */
    model_step(st, x, y);
    (*env)->SetFloatArrayRegion(env, out, 0, MODEL_OUTPUTS, y);
}

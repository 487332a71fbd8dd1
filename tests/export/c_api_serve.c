/* Loads a SavedModel with TensorFlow's C API (the loader TF Serving builds on), feeds an int32
 * [rows, width] matrix to one input and writes one int32 output to a file.
 * usage: serve EXPORT_DIR INPUT_OP INPUT_INDEX OUTPUT_OP OUTPUT_INDEX IN.bin OUT.bin
 * IN.bin: int64 rows, int64 width, then rows*width int32; OUT.bin: int64 rows, int64 cols, int32 data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tensorflow/c/c_api.h"

static void dealloc(void *data, size_t len, void *arg) { (void)len; (void)arg; free(data); }

static int fail(const char *what, TF_Status *status) {
  fprintf(stderr, "%s: %s\n", what, status ? TF_Message(status) : "");
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 8) { fprintf(stderr, "usage: serve DIR IN_OP IN_IDX OUT_OP OUT_IDX IN.bin OUT.bin\n"); return 2; }
  FILE *in = fopen(argv[6], "rb");
  if (!in) return fail("cannot open input", NULL);
  int64_t dims[2];
  if (fread(dims, sizeof(int64_t), 2, in) != 2) return fail("bad input header", NULL);
  size_t count = (size_t)(dims[0] * dims[1]);
  size_t bytes = count * sizeof(int32_t);
  int32_t *values = malloc(bytes ? bytes : 1);
  if (count && fread(values, sizeof(int32_t), count, in) != count) return fail("short input", NULL);
  fclose(in);

  TF_Status *status = TF_NewStatus();
  TF_Graph *graph = TF_NewGraph();
  TF_SessionOptions *options = TF_NewSessionOptions();
  const char *tags[] = {"serve"};
  TF_Session *session = TF_LoadSessionFromSavedModel(options, NULL, argv[1], tags, 1, graph, NULL, status);
  if (TF_GetCode(status) != TF_OK) return fail("TF_LoadSessionFromSavedModel", status);

  TF_Operation *in_op = TF_GraphOperationByName(graph, argv[2]);
  TF_Operation *out_op = TF_GraphOperationByName(graph, argv[4]);
  if (!in_op || !out_op) return fail("operation not found", NULL);
  TF_Output input = {in_op, atoi(argv[3])}, output = {out_op, atoi(argv[5])};
  TF_Tensor *tensor = TF_NewTensor(TF_INT32, dims, 2, values, bytes, dealloc, NULL);
  TF_Tensor *result = NULL;
  TF_SessionRun(session, NULL, &input, &tensor, 1, &output, &result, 1, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK) return fail("TF_SessionRun", status);
  if (TF_TensorType(result) != TF_INT32 || TF_NumDims(result) != 2) return fail("unexpected output type or rank", NULL);

  int64_t out_dims[2] = {TF_Dim(result, 0), TF_Dim(result, 1)};
  FILE *out = fopen(argv[7], "wb");
  fwrite(out_dims, sizeof(int64_t), 2, out);
  fwrite(TF_TensorData(result), 1, TF_TensorByteSize(result), out);
  fclose(out);

  TF_DeleteTensor(tensor);
  TF_DeleteTensor(result);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}

/* The string-id signature through TensorFlow's C API: feeds a TF_STRING [rows, width] matrix to one
 * input and writes one TF_STRING output to a file.
 * usage: serve_strings EXPORT_DIR INPUT_OP INPUT_INDEX OUTPUT_OP OUTPUT_INDEX IN.bin OUT.bin
 * IN.bin and OUT.bin: int64 rows, int64 cols, then per cell an int32 byte length and the bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tensorflow/c/c_api.h"
#include "tensorflow/c/tf_tstring.h"

static int fail(const char *what, TF_Status *status) {
  fprintf(stderr, "%s: %s\n", what, status ? TF_Message(status) : "");
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 8) { fprintf(stderr, "usage: serve_strings DIR IN_OP IN_IDX OUT_OP OUT_IDX IN.bin OUT.bin\n"); return 2; }
  FILE *in = fopen(argv[6], "rb");
  if (!in) return fail("cannot open input", NULL);
  int64_t dims[2];
  if (fread(dims, sizeof(int64_t), 2, in) != 2) return fail("bad input header", NULL);
  size_t count = (size_t)(dims[0] * dims[1]);
  TF_Tensor *tensor = TF_AllocateTensor(TF_STRING, dims, 2, count * sizeof(TF_TString));
  TF_TString *cells = (TF_TString *)TF_TensorData(tensor);
  char buffer[4096];
  for (size_t i = 0; i < count; i++) {
    int32_t length;
    if (fread(&length, sizeof(int32_t), 1, in) != 1 || length < 0 || length > (int32_t)sizeof(buffer)) return fail("bad cell", NULL);
    if (length && fread(buffer, 1, (size_t)length, in) != (size_t)length) return fail("short cell", NULL);
    TF_StringInit(&cells[i]);
    TF_StringCopy(&cells[i], buffer, (size_t)length);
  }
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
  TF_Tensor *result = NULL;
  TF_SessionRun(session, NULL, &input, &tensor, 1, &output, &result, 1, NULL, 0, NULL, status);
  if (TF_GetCode(status) != TF_OK) return fail("TF_SessionRun", status);
  if (TF_TensorType(result) != TF_STRING || TF_NumDims(result) != 2) return fail("unexpected output type or rank", NULL);

  int64_t out_dims[2] = {TF_Dim(result, 0), TF_Dim(result, 1)};
  FILE *out = fopen(argv[7], "wb");
  fwrite(out_dims, sizeof(int64_t), 2, out);
  const TF_TString *answers = (const TF_TString *)TF_TensorData(result);
  for (int64_t i = 0; i < out_dims[0] * out_dims[1]; i++) {
    int32_t length = (int32_t)TF_StringGetSize(&answers[i]);
    fwrite(&length, sizeof(int32_t), 1, out);
    fwrite(TF_StringGetDataPointer(&answers[i]), 1, (size_t)length, out);
  }
  fclose(out);
  for (size_t i = 0; i < count; i++) TF_StringDealloc(&cells[i]);
  TF_DeleteTensor(tensor);
  TF_DeleteTensor(result);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(options);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}

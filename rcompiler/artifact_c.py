"""The C side of an exported artifact: the wrapper linked into the library, and its header.

The compiled payload is called through MLIR's C interface (`_mlir_ciface_<function>`, one
memref descriptor per argument). The wrapper builds those descriptors on the stack of each
call from the caller's flat row-major buffers and the library's own weights, so a call has no
state but its arguments and any number of threads may call at once. It also provides what the
lowered code calls outside itself: the run-time check's report (kept per thread) and
`memrefCopy`, which MLIR's C runner library would otherwise supply.
"""
from __future__ import annotations

import json

ERRORS = {0: "RC_OK", -1: "RC_BAD_ARGUMENT", -2: "RC_INDEX_OUT_OF_RANGE"}
_C_TYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t", "int8": "int8_t",
            "bool": "int8_t"}

API = """\
typedef struct rc_model rc_model;

#define RC_OK 0
#define RC_BAD_ARGUMENT (-1)        /* a NULL model or buffer */
#define RC_INDEX_OUT_OF_RANGE (-2)  /* an index input outside the table it selects from */
/* a positive code: a run-time check of the model failed; rc_check_message(code) says which */

/* One model; threads: how many threads a call may use (this artifact: 1). NULL if unsupported.
 * With glibc, it sets malloc to keep freed memory in the heap (mallopt: mmap threshold 32 MiB,
 * trim threshold 1 GiB), so the temporaries of each call do not fault their pages in again. */
rc_model *rc_create(int threads);
/* inputs[i] and outputs[i]: C-contiguous buffers of the shapes and types listed above. */
int rc_run(rc_model *model, const void *const *inputs, void *const *outputs);
void rc_destroy(rc_model *model);
const char *rc_check_message(int code);
const char *rc_metadata(void);  /* JSON: inputs, outputs, version, schedule, hardware, ISA */
int rc_abi_version(void);
"""


def header(kernel, metadata: dict, stem: str) -> str:
    """The C header written beside the library."""
    guard = "RC_" + "".join(c if c.isalnum() else "_" for c in stem.upper()) + "_H"
    lines = [f"/* {stem}.h: rcompiler {metadata['rcompiler']} artifact for {metadata['kernel']}",
             f" * compiled for {metadata['cpu']} (hardware {metadata['hardware']}), {metadata['threads']} thread(s)",
             f" * schedule: {metadata['schedule'][:300]}"]
    for role in ("inputs", "outputs"):
        lines.append(f" * {role}:")
        for i, a in enumerate(metadata[role]):
            bound = f", values in [-{a['bound']}, {a['bound']})" if a.get("bound") else ""
            lines.append(f" *   [{i}] {a['name']}: {a['dtype']}[{', '.join(map(str, a['shape']))}]{bound}")
    lines += [" */", f"#ifndef {guard}", f"#define {guard}", "#include <stdint.h>", "",
              "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
              f"#define RC_ABI_VERSION {metadata['abi']}",
              f"#define RC_NUM_INPUTS {len(metadata['inputs'])}",
              f"#define RC_NUM_OUTPUTS {len(metadata['outputs'])}", "", API,
              "#ifdef __cplusplus", "}", "#endif", f"#endif /* {guard} */", ""]
    return "\n".join(lines)


def wrapper(kernel, metadata: dict, checks: tuple[str, ...], weights: dict[str, int]) -> str:
    """C source of the library's entry points, for this kernel's signature."""
    ranks = sorted({len(a.shape) for a in kernel.args})
    out = ["#include <stdint.h>", "#include <stdlib.h>", "#include <string.h>", "",
           f"#define RC_ABI_VERSION {metadata['abi']}", API, "struct rc_model { int threads; };", ""]
    for r in ranks:
        dims = f" int64_t sizes[{r}]; int64_t strides[{r}];" if r else ""
        out.append(f"typedef struct {{ void *allocated; void *aligned; int64_t offset;{dims} }} rc_memref{r};")
    params = ", ".join(f"rc_memref{len(a.shape)} *" for a in kernel.args)
    out += ["", f"void _mlir_ciface_{kernel.func_name}({params});", ""]
    out += _weights(weights) + _metadata(metadata) + _checks(checks) + [_MEMREF_COPY]
    out += _run(kernel, metadata, weights)
    return "\n".join(out) + "\n"


def _weights(weights: dict[str, int]) -> list[str]:
    if not weights:
        return []
    # the weights file, assembled into read-only data: mapped from the library, never copied
    return ['__asm__(".section .rodata\\n.balign 64\\n.globl rc_weights\\n.hidden rc_weights\\nrc_weights:\\n'
            '.incbin \\"weights.bin\\"\\n.previous\\n");', "extern const unsigned char rc_weights[];", ""]


def _metadata(metadata: dict) -> list[str]:
    data = json.dumps(metadata).encode() + b"\0"
    body = ",".join(str(b) for b in data)
    return [f"static const char rc_meta[] = {{{body}}};", "const char *rc_metadata(void) { return rc_meta; }",
            "int rc_abi_version(void) { return RC_ABI_VERSION; }", ""]


def _checks(checks: tuple[str, ...]) -> list[str]:
    messages = ", ".join(json.dumps(m) for m in checks) or '""'
    return [f"static const char *const rc_messages[] = {{{messages}}};",
            f"#define RC_NUM_CHECKS {len(checks)}",
            "static __thread int rc_failed;  /* the first check that failed in this thread's call, + 1 */",
            "void _mlir_ciface_rcompiler_check_failed(int32_t id) { if (!rc_failed) rc_failed = id + 1; }",
            "const char *rc_check_message(int code) {",
            "  if (code == 0) return \"ok\";",
            "  if (code == -1) return \"a NULL model, input or output buffer\";",
            "  if (code == -2) return \"an index input holds a value outside the table it selects from\";",
            "  return code > 0 && code <= RC_NUM_CHECKS ? rc_messages[code - 1] : \"unknown code\";",
            "}", ""]


# Copies between strided memrefs: MLIR lowers a memref.copy whose layouts it cannot prove contiguous
# to this call (a split's slices of one buffer). As MLIR's C runner library does, a copy whose rows
# are contiguous in both moves a row per memcpy, and one that is contiguous throughout, one memcpy.
_MEMREF_COPY = """\
typedef struct { int64_t rank; void *descriptor; } rc_unranked;
void memrefCopy(int64_t size, rc_unranked *src, rc_unranked *dst) {
  int64_t rank = src->rank;
  int64_t *s = (int64_t *)((char *)src->descriptor + 2 * sizeof(void *));
  int64_t *d = (int64_t *)((char *)dst->descriptor + 2 * sizeof(void *));
  char *from = *(char **)((char *)src->descriptor + sizeof(void *)) + s[0] * size;
  char *to = *(char **)((char *)dst->descriptor + sizeof(void *)) + d[0] * size;
  int64_t *sizes = s + 1, *sstrides = s + 1 + rank, *dstrides = d + 1 + rank;
  int64_t total = 1;
  for (int64_t i = 0; i < rank; i++) total *= sizes[i];
  if (total == 0) return;
  /* the innermost dims that are one dense block in both */
  int64_t inner = rank, block = 1;
  while (inner > 0 && (sizes[inner - 1] == 1 ||
         (sstrides[inner - 1] == block && dstrides[inner - 1] == block))) {
    block *= sizes[inner - 1];
    inner--;
  }
  int64_t index[rank > 0 ? rank : 1];
  for (int64_t i = 0; i < rank; i++) index[i] = 0;
  for (int64_t n = 0; n < total / block; n++) {
    int64_t so = 0, dof = 0;
    for (int64_t i = 0; i < inner; i++) { so += index[i] * sstrides[i]; dof += index[i] * dstrides[i]; }
    memcpy(to + dof * size, from + so * size, block * size);
    for (int64_t i = inner - 1; i >= 0; i--) { if (++index[i] < sizes[i]) break; index[i] = 0; }
  }
}
"""


# A call mallocs its temporaries (packed panels, a task's results). With glibc's defaults, a block
# over 128 KiB is mmapped and unmapped on every call, so its pages fault in again each time (BERT-base
# ran 25% slower). As rcompiler.jit does in every process that runs compiled code, freed memory stays
# in the heap; the header says so.
_KEEP_HEAP = """\
#ifdef __GLIBC__
#include <malloc.h>
static void rc_keep_heap_memory(void) {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}
#else
static void rc_keep_heap_memory(void) {}
#endif
"""


def _descriptor(var: str, arg, pointer: str) -> list[str]:
    r = len(arg.shape)
    lines = [f"  rc_memref{r} {var};", f"  {var}.allocated = {var}.aligned = (void *)({pointer});",
             f"  {var}.offset = 0;"]
    stride = 1
    for i in reversed(range(r)):
        lines.append(f"  {var}.sizes[{i}] = {arg.shape[i]}; {var}.strides[{i}] = {stride};")
        stride *= arg.shape[i]
    return lines


def _run(kernel, metadata: dict, weights: dict[str, int]) -> list[str]:
    lines = [_KEEP_HEAP, "rc_model *rc_create(int threads) {",
             f"  if (threads != {metadata['threads']}) return NULL;",
             "  rc_keep_heap_memory();",
             "  rc_model *m = malloc(sizeof *m);", "  if (m) m->threads = threads;", "  return m;", "}",
             "void rc_destroy(rc_model *m) { free(m); }", "",
             "int rc_run(rc_model *model, const void *const *inputs, void *const *outputs) {",
             "  if (!model || !inputs || !outputs) return -1;"]
    names, i_in, i_out = [], 0, 0
    for n, arg in enumerate(kernel.args):
        var = f"a{n}"
        if arg.is_param:
            pointer = f"rc_weights + {weights[arg.name]}"
        elif arg.is_output:
            lines.append(f"  if (!outputs[{i_out}]) return -1;")
            pointer, i_out = f"outputs[{i_out}]", i_out + 1
        else:
            lines.append(f"  if (!inputs[{i_in}]) return -1;")
            if arg.bound is not None:  # a gather with an index outside its table would read outside memory
                c_type, count = _C_TYPES[arg.dtype], _count(arg)
                lines += [f"  for (int64_t i = 0; i < {count}; i++) {{",
                          f"    int64_t v = ((const {c_type} *)inputs[{i_in}])[i];",
                          f"    if (v < -{arg.bound} || v >= {arg.bound}) return -2;", "  }"]
            pointer, i_in = f"inputs[{i_in}]", i_in + 1
        lines += _descriptor(var, arg, pointer)
        names.append(f"&{var}")
    lines += ["  rc_failed = 0;", f"  _mlir_ciface_{kernel.func_name}({', '.join(names)});",
              "  return rc_failed;", "}"]
    return lines


def _count(arg) -> int:
    total = 1
    for d in arg.shape:
        total *= d
    return total


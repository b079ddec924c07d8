/*
 * The records of a Kafka batch checked in C: the broker's produce path.
 *
 * records_problem(body, count) -> str | None
 *
 * `body` is the records section of a batch (decompressed), `count` the batch header's
 * record count. The answer says what is wrong, or None when every record parses as its
 * readers parse it: each record whole within its length, offset deltas 0..count-1,
 * header names not null, and nothing after the last record. The same answer as
 * _records_problem_in_python in kafka_batch.py, which stands in where this module was
 * not built; in Python the walk costs microseconds a record, here nanoseconds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>

/* A zigzag varint at *pos (at most 10 bytes); 0 when it runs past `size` or is longer. */
static int
varint(const unsigned char *p, Py_ssize_t size, Py_ssize_t *pos, int64_t *out)
{
    uint64_t raw = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
        if (*pos >= size) {
            return 0;
        }
        unsigned char b = p[(*pos)++];
        raw |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
            return 1;
        }
    }
    return 0;
}

/* Skip a length-prefixed field that must end by `end`; 0 if it does not. */
static int
skip(const unsigned char *p, Py_ssize_t end, Py_ssize_t *pos, int nullable)
{
    int64_t n;
    if (!varint(p, end, pos, &n)) {
        return 0;
    }
    if (n < 0) {
        return nullable;
    }
    if (n > end - *pos) {
        return 0;
    }
    *pos += (Py_ssize_t)n;
    return 1;
}

static PyObject *
records_problem(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "records_problem(body, count) takes 2 arguments");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    long long count = PyLong_AsLongLong(args[1]);
    if (count == -1 && PyErr_Occurred()) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *p = view.buf;
    Py_ssize_t size = view.len, pos = 0;
    PyObject *problem = NULL;
    for (long long i = 0; i < count && problem == NULL; i++) {
        int64_t length, value, delta, headers;
        if (!varint(p, size, &pos, &length)) {
            problem = PyUnicode_FromFormat("record %lld's length is cut off or too long", i);
            break;
        }
        if (length < 6 || length > size - pos) { /* 6: the fewest bytes a record takes */
            problem = PyUnicode_FromFormat(
                "record %lld says it has %lld bytes, %zd are left", i, (long long)length,
                size - pos);
            break;
        }
        Py_ssize_t end = pos + (Py_ssize_t)length;
        pos += 1; /* attributes */
        if (!varint(p, end, &pos, &value) || !varint(p, end, &pos, &delta)) {
            problem = PyUnicode_FromFormat("record %lld is cut off", i);
            break;
        }
        if (delta != i) {
            problem = PyUnicode_FromFormat("record %lld has offset delta %lld", i,
                                           (long long)delta);
            break;
        }
        if (!skip(p, end, &pos, 1) || !skip(p, end, &pos, 1)
            || !varint(p, end, &pos, &headers)) {
            problem = PyUnicode_FromFormat("record %lld's key or value runs past it", i);
            break;
        }
        if (headers < 0) {
            problem = PyUnicode_FromFormat("record %lld has %lld headers", i,
                                           (long long)headers);
            break;
        }
        for (int64_t h = 0; h < headers; h++) {
            if (!skip(p, end, &pos, 0) || !skip(p, end, &pos, 1)) {
                problem = PyUnicode_FromFormat("record %lld's header %lld runs past it", i,
                                               (long long)h);
                break;
            }
        }
        if (problem == NULL && pos != end) {
            problem = PyUnicode_FromFormat(
                "record %lld's fields end at byte %zd, its length says %zd", i, pos, end);
        }
    }
    if (problem == NULL && !PyErr_Occurred() && pos != size) {
        problem = PyUnicode_FromFormat("%zd bytes follow the last of its %lld records",
                                       size - pos, count);
    }
    PyBuffer_Release(&view);
    if (problem == NULL && !PyErr_Occurred()) {
        Py_RETURN_NONE;
    }
    return problem;
}

static PyMethodDef methods[] = {
    {"records_problem", (PyCFunction)(void (*)(void))records_problem, METH_FASTCALL,
     "records_problem(body, count) -> str | None: what is wrong with a batch's records."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tidings.core._kafka_check",
    .m_doc = "The records of a Kafka batch checked in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__kafka_check(void)
{
    return PyModule_Create(&module);
}

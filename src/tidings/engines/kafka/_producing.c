/*
 * The Kafka engine's produce path in C: handing a batch to librdkafka, counting its
 * delivery reports.
 *
 * produced(produce, batch, headers, done, start) -> (next, error)
 *
 *   Calls produce(topic, value, key, partition, done, None, timestamp, headers) for each
 *   record of `batch` (a ColumnBatch) from index `start`, `headers` being the batch's
 *   headers as librdkafka takes them (a list of lists or None per record), or None. It
 *   stops at the first record produce() refuses: `next` is that record's index (the
 *   batch's length when all went) and `error` the exception raised, else None.
 *
 * Counter, the base class of the engine's _Delivery, counts a batch's reports down in
 *   librdkafka's delivery thread: done(err, msg) is called once per record and calls
 *   _note(err, msg) only for the first, the last and failed ones.
 *
 * The same as _produced_in_python and _Delivery in producer.py, which stand in where this
 * module was not built. What goes away is the interpreter's work around each produce()
 * and each report, about 200 ns a record, paid while holding the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyObject *s_note;

/* -- Counter ----------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t left;
    long long base;
} Counter;

static PyObject *
counter_done(Counter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "done(err, msg) takes 2 arguments");
        return NULL;
    }
    self->left--;
    if (args[0] == Py_None && self->base >= 0 && self->left) {
        Py_RETURN_NONE;
    }
    PyObject *call[3] = {(PyObject *)self, args[0], args[1]};
    return PyObject_VectorcallMethod(s_note, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyMemberDef counter_members[] = {
    {"left", T_PYSSIZET, offsetof(Counter, left), 0, "Reports still to come."},
    {"base", T_LONGLONG, offsetof(Counter, base), 0,
     "The first record's offset; -1 until its report came."},
    {NULL},
};

static PyMethodDef counter_methods[] = {
    {"done", (PyCFunction)(void (*)(void))counter_done, METH_FASTCALL,
     "done(err, msg): librdkafka's delivery report of one record."},
    {NULL, NULL, 0, NULL},
};

static void
counter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static int
counter_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static PyType_Slot counter_slots[] = {
    {Py_tp_doc, "A batch's delivery reports, counted down."},
    {Py_tp_dealloc, counter_dealloc},
    {Py_tp_traverse, counter_traverse},
    {Py_tp_members, counter_members},
    {Py_tp_methods, counter_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec counter_spec = {
    .name = "tidings.engines.kafka._producing.Counter",
    .basicsize = sizeof(Counter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = counter_slots,
};

/* -- produced ---------------------------------------------------------------------- */

enum { TOPIC, PARTITION, VALUES, KEYS, TIMESTAMPS, HEADERS, COLUMNS };

/* The exception being raised, taken (a new reference). */
static PyObject *
raised(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

/* Column `c` of a batch as a list or tuple (a new reference); None stays None. */
static PyObject *
column(PyObject *c)
{
    return c == Py_None ? Py_NewRef(c) : PySequence_Fast(c, "a batch's column is not a sequence");
}

/* Item `i` of `c` (borrowed), None when `c` is None or shorter: the caller checks sizes. */
static PyObject *
item(PyObject *c, Py_ssize_t i)
{
    return c == Py_None || i >= PySequence_Fast_GET_SIZE(c) ? Py_None
                                                            : PySequence_Fast_GET_ITEM(c, i);
}

/* Whether `c` is None or has at least `n` items. */
static int
covers(PyObject *c, Py_ssize_t n)
{
    return c == Py_None || PySequence_Fast_GET_SIZE(c) >= n;
}

/* Produce the records of `columns` (values, keys, timestamps, headers) from `start`. */
static PyObject *
produce_columns(PyObject *produce, PyObject **call, PyObject *const *columns, Py_ssize_t start)
{
    PyObject *values = columns[0], *keys = columns[1], *timestamps = columns[2],
             *headers = columns[3];
    Py_ssize_t i = start;
    for (; i < PySequence_Fast_GET_SIZE(values); i++) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(values);
        if (timestamps == Py_None || !covers(timestamps, n) || !covers(keys, n)
            || !covers(headers, n)) {
            PyErr_SetString(PyExc_TypeError, "a batch's columns are shorter than its values");
            return NULL;
        }
        /* a strong reference to each of the record's fields while produce() runs */
        call[1] = Py_NewRef(PySequence_Fast_GET_ITEM(values, i));
        call[2] = Py_NewRef(item(keys, i));
        call[6] = Py_NewRef(PySequence_Fast_GET_ITEM(timestamps, i));
        call[7] = Py_NewRef(item(headers, i));
        PyObject *r = PyObject_Vectorcall(produce, call, 8, NULL);
        Py_DECREF(call[1]);
        Py_DECREF(call[2]);
        Py_DECREF(call[6]);
        Py_DECREF(call[7]);
        if (r == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                return NULL;
            }
            return Py_BuildValue("(nN)", i, raised());
        }
        Py_DECREF(r);
    }
    return Py_BuildValue("(nO)", i, Py_None);
}

static PyObject *
produced(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *batch = nargs == 5 ? args[1] : NULL;
    Py_ssize_t start = nargs == 5 ? PyLong_AsSsize_t(args[4]) : -1;
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (batch == NULL || !PyTuple_Check(batch) || PyTuple_GET_SIZE(batch) != COLUMNS
        || start < 0) {
        PyErr_SetString(PyExc_TypeError,
                        "produced(produce, batch: ColumnBatch, headers, done, start: int >= 0)");
        return NULL;
    }
    PyObject *given[4] = {PyTuple_GET_ITEM(batch, VALUES), PyTuple_GET_ITEM(batch, KEYS),
                          PyTuple_GET_ITEM(batch, TIMESTAMPS), args[2]};
    PyObject *columns[4] = {NULL};
    /* one at a time: a column that is not a list may run Python code to be read */
    for (int c = 0; c < 4 && (c == 0 || columns[c - 1] != NULL); c++) {
        columns[c] = column(given[c]);
    }
    PyObject *result = NULL;
    if (columns[3] != NULL && columns[0] != Py_None) {
        PyObject *call[8] = {PyTuple_GET_ITEM(batch, TOPIC), NULL, NULL,
                             PyTuple_GET_ITEM(batch, PARTITION), args[3], Py_None, NULL, NULL};
        result = produce_columns(args[0], call, columns, start);
    }
    else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "a batch's values are None");
    }
    for (int c = 0; c < 4; c++) {
        Py_XDECREF(columns[c]);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"produced", (PyCFunction)(void (*)(void))produced, METH_FASTCALL,
     "produced(produce, batch, headers, done, start) -> (next, error): produce a batch's "
     "records from `start` until one is refused."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tidings.engines.kafka._producing",
    .m_doc = "The Kafka engine's produce path in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__producing(void)
{
    s_note = PyUnicode_InternFromString("_note");
    if (s_note == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    PyObject *counter = m == NULL ? NULL : PyType_FromSpec(&counter_spec);
    if (counter == NULL || PyModule_AddObjectRef(m, "Counter", counter) < 0) {
        Py_XDECREF(counter);
        Py_XDECREF(m);
        return NULL;
    }
    Py_DECREF(counter);
    return m;
}

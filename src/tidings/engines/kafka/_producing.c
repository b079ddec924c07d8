/*
 * The Kafka engine's produce path in C: handing records to librdkafka, counting their
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
 * Counter, the base class of the engine's _Delivery, counts a batch's reports in
 *   librdkafka's delivery thread. done(err, msg) is called once per record: it keeps the
 *   records' offsets (the first, and each one where they stop being consecutive: records
 *   of other producers came between) and the first error, and calls _complete(msg) on the
 *   last report once the batch's size is known. expect(records) gives that size: when every
 *   report is already in, it returns the last one's message (the caller completes the
 *   batch), else None. Exactly one of the two sees the batch complete.
 *
 * The same as _produced_in_python and _PythonCounter in producer.py, which stand in
 * where this module was not built. What goes away is the interpreter's work
 * around each produce() and each report, about 200 ns a record, paid while holding the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

static PyObject *s_complete, *s_offset;

static PyObject *raised(void);

/* Free `self`, an object of a heap type, after `clear` has dropped its references. */
static void
dealloc(PyObject *self, inquiry clear)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* -- Counter ----------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Py_ssize_t records;  /* -1 until expect() */
    Py_ssize_t reported;
    long long base;      /* -1 until a record's report gave its offset */
    long long next;      /* the offset the next record has if they are consecutive */
    long long *offsets;  /* every offset, once they are not consecutive; else NULL */
    Py_ssize_t count, room;
    PyObject *error;     /* the first failed report's error, or NULL */
    PyObject *last;      /* the last report's message while `records` is unknown */
} Counter;

/* Keep a delivered record's offset: 0, or -1 with an error set. */
static int
keep_offset(Counter *self, long long offset)
{
    if (self->base < 0) {
        self->base = offset;
        self->next = offset + 1;
        return 0;
    }
    if (self->offsets == NULL && offset == self->next) {
        self->next++;
        return 0;
    }
    if (self->offsets == NULL) { /* the first gap: the offsets so far, written out */
        self->count = (Py_ssize_t)(self->next - self->base);
        self->room = self->count * 2 + 16;
        self->offsets = PyMem_New(long long, self->room);
        if (self->offsets == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < self->count; i++) {
            self->offsets[i] = self->base + i;
        }
    }
    if (self->count == self->room) {
        Py_ssize_t room = self->room * 2;
        long long *grown = room > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(long long)
                               ? NULL
                               : PyMem_Realloc(self->offsets, (size_t)room * sizeof(long long));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->offsets = grown;
        self->room = room;
    }
    self->offsets[self->count++] = offset;
    return 0;
}

/* The offset in a delivered message (None counts as 0), or -1 with an error set. */
static long long
offset_of(PyObject *msg)
{
    PyObject *offset = PyObject_CallMethodNoArgs(msg, s_offset);
    if (offset == NULL) {
        return -1;
    }
    long long value = offset == Py_None ? 0 : PyLong_AsLongLong(offset);
    Py_DECREF(offset);
    return value;
}

static PyObject *
counter_done(Counter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "done(err, msg) takes 2 arguments");
        return NULL;
    }
    PyObject *err = args[0], *msg = args[1];
    self->reported++;
    if (err != Py_None) {
        if (self->error == NULL) {
            self->error = Py_NewRef(err);
        }
    }
    else {
        long long offset = offset_of(msg);
        if ((offset == -1 && PyErr_Occurred()) || keep_offset(self, offset) < 0) {
            /* the batch fails with it, still counted: it must complete all the same */
            PyObject *failed = raised();
            if (failed == NULL) {
                return NULL;
            }
            if (self->error == NULL) {
                self->error = failed;
            }
            else {
                Py_DECREF(failed);
            }
        }
    }
    if (self->records < 0) {
        Py_XSETREF(self->last, Py_NewRef(msg));
        Py_RETURN_NONE;
    }
    if (self->reported != self->records) {
        Py_RETURN_NONE;
    }
    PyObject *call[2] = {(PyObject *)self, msg};
    return PyObject_VectorcallMethod(s_complete, call, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *
counter_expect(Counter *self, PyObject *arg)
{
    Py_ssize_t records = PyLong_AsSsize_t(arg);
    if (records == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (records < 1) {
        PyErr_SetString(PyExc_ValueError, "expect(records) takes a count of at least 1");
        return NULL;
    }
    self->records = records;
    PyObject *last = self->last;
    self->last = NULL;
    if (self->reported < records || last == NULL) {
        Py_XDECREF(last);
        Py_RETURN_NONE;
    }
    return last;
}

static int
counter_traverse(Counter *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->error);
    Py_VISIT(self->last);
    return 0;
}

static int
counter_clear(Counter *self)
{
    Py_CLEAR(self->error);
    Py_CLEAR(self->last);
    PyMem_Free(self->offsets);
    self->offsets = NULL;
    return 0;
}

static PyObject *
counter_get_offsets(Counter *self, void *Py_UNUSED(closure))
{
    if (self->offsets == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *list = PyList_New(self->count);
    for (Py_ssize_t i = 0; list != NULL && i < self->count; i++) {
        PyObject *offset = PyLong_FromLongLong(self->offsets[i]);
        if (offset == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, offset);
    }
    return list;
}

static PyGetSetDef counter_getset[] = {
    {"offsets", (getter)counter_get_offsets, NULL,
     "Each delivered record's offset, in order, where they are not consecutive; else None.",
     NULL},
    {NULL},
};

static void
counter_dealloc(PyObject *self)
{
    dealloc(self, (inquiry)counter_clear);
}

static PyObject *
counter_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    Counter *self = (Counter *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->records = -1;
        self->base = -1;
    }
    return (PyObject *)self;
}

static PyMemberDef counter_members[] = {
    {"records", T_PYSSIZET, offsetof(Counter, records), READONLY,
     "The batch's records; -1 until expect() gave them."},
    {"reported", T_PYSSIZET, offsetof(Counter, reported), READONLY, "Reports come so far."},
    {"base", T_LONGLONG, offsetof(Counter, base), READONLY,
     "The first record's offset; -1 until its report came."},
    {"error", T_OBJECT, offsetof(Counter, error), READONLY,
     "The first failed report's error (a KafkaError, or what reading a report raised), "
     "or None."},
    {NULL},
};

static PyMethodDef counter_methods[] = {
    {"done", (PyCFunction)(void (*)(void))counter_done, METH_FASTCALL,
     "done(err, msg): librdkafka's delivery report of one record."},
    {"expect", (PyCFunction)counter_expect, METH_O,
     "expect(records): the batch's size; the last report's message if all are in, else None."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot counter_slots[] = {
    {Py_tp_doc, "A batch's delivery reports, counted."},
    {Py_tp_dealloc, counter_dealloc},
    {Py_tp_traverse, counter_traverse},
    {Py_tp_clear, counter_clear},
    {Py_tp_members, counter_members},
    {Py_tp_getset, counter_getset},
    {Py_tp_methods, counter_methods},
    {Py_tp_new, counter_new},
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

static int
add_type(PyObject *m, PyType_Spec *spec)
{
    PyObject *type = PyType_FromSpec(spec);
    int added = type == NULL ? -1 : PyModule_AddObjectRef(m, strrchr(spec->name, '.') + 1, type);
    Py_XDECREF(type);
    return added;
}

PyMODINIT_FUNC
PyInit__producing(void)
{
    s_complete = PyUnicode_InternFromString("_complete");
    s_offset = PyUnicode_InternFromString("offset");
    if (s_complete == NULL || s_offset == NULL) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL || add_type(m, &counter_spec) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    return m;
}

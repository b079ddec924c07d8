/*
 * Records from librdkafka's messages, made in C: the Kafka engine's read path.
 *
 * made(messages, message_type, record, no_headers) -> (records, starts)
 *
 * Each message (a confluent_kafka.Message without an error, its fields read by the methods
 * of `message_type`) becomes a `record`, a tuple
 * subclass of (topic, partition, offset, timestamp, key, value, headers); `starts` holds
 * the index of each record whose topic or partition differs from the one before it (the
 * runs of one partition). The same result as _made_in_python in consumer.py, which
 * stands in where this module was not built.
 *
 * Two costs of making records in Python go away here: each field is read by calling the
 * message type's method descriptor directly, and a record, which holds only strings,
 * integers, bytes, None and tuples of those, cannot be part of a reference cycle, so it
 * is not tracked by the cyclic garbage collector (as CPython does for such plain tuples).
 * A record holding anything else (from a message made in Python, say) stays tracked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { TOPIC, PARTITION, OFFSET, TIMESTAMP, KEY, VALUE, HEADERS, FIELDS };

static const char *const field_names[FIELDS] = {
    "topic", "partition", "offset", "timestamp", "key", "value", "headers",
};

static PyObject *interned[FIELDS];

/* The value of `field` of message `m`, as a record holds it (a new reference). */
static PyObject *
field_of(PyObject *m, int field, PyObject *const *readers, PyObject *no_headers)
{
    PyObject *v = PyObject_Vectorcall(readers[field], &m, 1, NULL);
    if (v == NULL) {
        return NULL;
    }
    if (field == TIMESTAMP) {
        /* (timestamp type, milliseconds) */
        if (!PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2) {
            Py_DECREF(v);
            PyErr_SetString(PyExc_TypeError, "a message's timestamp() is not a pair");
            return NULL;
        }
        PyObject *ms = Py_NewRef(PyTuple_GET_ITEM(v, 1));
        Py_DECREF(v);
        return ms;
    }
    if (field == HEADERS) {
        Py_ssize_t size = v == Py_None ? 0 : PyObject_Size(v);
        if (size <= 0) {
            Py_DECREF(v);
            return size < 0 ? NULL : Py_NewRef(no_headers);
        }
        PyObject *t = PySequence_Tuple(v);
        Py_DECREF(v);
        return t;
    }
    return v;
}

/* Whether `v` is a value no reference cycle can pass through: None, or an exact str,
 * int or bytes. */
static int
is_plain(PyObject *v)
{
    return v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v)
           || PyBytes_CheckExact(v);
}

/* Whether every field of record `r` is plain, its headers an exact tuple of exact
 * (plain, plain) tuples. */
static int
holds_only_plain_values(PyObject *r)
{
    for (int f = 0; f < HEADERS; f++) {
        if (!is_plain(PyTuple_GET_ITEM(r, f))) {
            return 0;
        }
    }
    PyObject *headers = PyTuple_GET_ITEM(r, HEADERS);
    if (!PyTuple_CheckExact(headers)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(headers); i++) {
        PyObject *h = PyTuple_GET_ITEM(headers, i);
        if (!PyTuple_CheckExact(h) || PyTuple_GET_SIZE(h) != 2
            || !is_plain(PyTuple_GET_ITEM(h, 0)) || !is_plain(PyTuple_GET_ITEM(h, 1))) {
            return 0;
        }
    }
    return 1;
}

/* 1 when record `a` and record `b` come from the same topic and partition, 0 when not,
 * -1 on error. */
static int
same_partition(PyObject *a, PyObject *b)
{
    int same = PyObject_RichCompareBool(
        PyTuple_GET_ITEM(a, PARTITION), PyTuple_GET_ITEM(b, PARTITION), Py_EQ);
    if (same != 1) {
        return same;
    }
    return PyObject_RichCompareBool(PyTuple_GET_ITEM(a, TOPIC), PyTuple_GET_ITEM(b, TOPIC), Py_EQ);
}

static PyObject *
made(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])
        || !PyType_IsSubtype((PyTypeObject *)args[2], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError,
                        "made(messages: list, message_type: type, record: a tuple subclass, "
                        "no_headers)");
        return NULL;
    }
    PyTypeObject *record = (PyTypeObject *)args[2];
    PyObject *no_headers = args[3];
    /* a record type with a __dict__ could hold anything: leave those tracked */
    int may_untrack = record->tp_dictoffset == 0;
    PyObject *readers[FIELDS] = {NULL};
    /* a copy, which no field reader can change under the loop */
    PyObject *messages = PyList_AsTuple(args[0]);
    Py_ssize_t n = messages == NULL ? 0 : PyTuple_GET_SIZE(messages);
    PyObject *records = PyList_New(n);
    PyObject *starts = PyList_New(0);
    PyObject *result = NULL;
    if (messages == NULL || records == NULL || starts == NULL) {
        goto done;
    }
    for (int f = 0; f < FIELDS; f++) {
        readers[f] = PyObject_GetAttr(args[1], interned[f]);
        if (readers[f] == NULL) {
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyTuple_GET_ITEM(messages, i);
        PyObject *r = record->tp_alloc(record, FIELDS);
        if (r == NULL) {
            goto done;
        }
#if PY_VERSION_HEX >= 0x030E0000
        /* 3.14 caches a tuple's hash; tp_alloc's zeroed memory would read as hash 0 */
        ((PyTupleObject *)r)->ob_hash = -1;
#endif
        PyList_SET_ITEM(records, i, r);
        for (int f = 0; f < FIELDS; f++) {
            PyObject *v = field_of(m, f, readers, no_headers);
            if (v == NULL) {
                goto done;
            }
            PyTuple_SET_ITEM(r, f, v);
        }
        if (may_untrack && holds_only_plain_values(r)) {
            PyObject_GC_UnTrack(r);
        }
        int same = i == 0 ? 0 : same_partition(PyList_GET_ITEM(records, i - 1), r);
        if (same < 0) {
            goto done;
        }
        if (!same) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(starts, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
        }
    }
    result = PyTuple_Pack(2, records, starts);
done:
    for (int f = 0; f < FIELDS; f++) {
        Py_XDECREF(readers[f]);
    }
    Py_XDECREF(messages);
    Py_XDECREF(records);
    Py_XDECREF(starts);
    return result;
}

static PyMethodDef methods[] = {
    {"made", (PyCFunction)(void (*)(void))made, METH_FASTCALL,
     "made(messages, message_type, record, no_headers) -> (records, starts): records from "
     "librdkafka's messages and the index where each partition's run starts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tidings.engines.kafka._records",
    .m_doc = "Records from librdkafka's messages, made in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    for (int f = 0; f < FIELDS; f++) {
        interned[f] = PyUnicode_InternFromString(field_names[f]);
        if (interned[f] == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module);
}

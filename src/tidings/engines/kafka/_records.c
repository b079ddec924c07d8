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
 * message type's method descriptor directly, and a record holding only plain values is
 * not tracked by the cyclic garbage collector (see core/_plain.h). A record holding
 * anything else (from a message made in Python, say) stays tracked.
 */
#include "../../core/_plain.h"

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
    if (nargs != 4 || !PyList_Check(args[0]) || !PyType_Check(args[1])
        || !is_record_type(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "made(messages: list, message_type: type, record: a tuple subclass, "
                        "no_headers)");
        return NULL;
    }
    PyTypeObject *record = (PyTypeObject *)args[2];
    PyObject *no_headers = args[3];
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
        PyObject *items[FIELDS];
        for (int f = 0; f < FIELDS; f++) {
            items[f] = field_of(m, f, readers, no_headers);
            if (items[f] == NULL) {
                while (f > 0) {
                    Py_DECREF(items[--f]);
                }
                goto done;
            }
        }
        PyObject *r = plain_record_of(record, items, FIELDS);
        if (r == NULL) {
            goto done;
        }
        PyList_SET_ITEM(records, i, r);
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

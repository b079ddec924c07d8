/*
 * Records a cyclic garbage collector need not watch, shared by tidings' C modules.
 *
 * A record (a tuple subclass of topic, partition, offset, timestamp, key, value, headers)
 * holding only strings, integers, bytes, None and tuples of those cannot be part of a
 * reference cycle, so it is not tracked by the collector, as CPython does for such plain
 * tuples. Thousands of records read at once then add nothing for the collector to scan,
 * however long the application keeps them. Only public C API is used: a record is made
 * by tuple's own constructor, which sets up whatever a Python version's tuple holds.
 */
#ifndef TIDINGS_PLAIN_H
#define TIDINGS_PLAIN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Whether `v` is a value no reference cycle can pass through: None, or an exact str,
 * int or bytes. */
static int
is_plain(PyObject *v)
{
    return v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v)
           || PyBytes_CheckExact(v);
}

/* Whether every item of `fields` is plain, or an exact tuple of exact tuples of plain
 * values (a record's headers). */
static int
holds_only_plain_values(PyObject *fields)
{
    for (Py_ssize_t f = 0; f < PyTuple_GET_SIZE(fields); f++) {
        PyObject *v = PyTuple_GET_ITEM(fields, f);
        if (is_plain(v)) {
            continue;
        }
        if (!PyTuple_CheckExact(v)) {
            return 0;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); i++) {
            PyObject *pair = PyTuple_GET_ITEM(v, i);
            if (!PyTuple_CheckExact(pair)) {
                return 0;
            }
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(pair); j++) {
                if (!is_plain(PyTuple_GET_ITEM(pair, j))) {
                    return 0;
                }
            }
        }
    }
    return 1;
}

/* A `record` (a tuple subclass without a __dict__) holding the items of the tuple
 * `fields`, untracked by the collector when they are plain; a new reference. */
static PyObject *
plain_record(PyTypeObject *record, PyObject *fields)
{
    PyObject *args = PyTuple_Pack(1, fields);
    if (args == NULL) {
        return NULL;
    }
    PyObject *r = PyTuple_Type.tp_new(record, args, NULL);
    Py_DECREF(args);
    if (r != NULL && record->tp_dictoffset == 0 && holds_only_plain_values(fields)) {
        PyObject_GC_UnTrack(r);
    }
    return r;
}

/* Whether `record` is a type plain_record can make: a subclass of tuple. */
static int
is_record_type(PyObject *record)
{
    return PyType_Check(record) && PyType_IsSubtype((PyTypeObject *)record, &PyTuple_Type);
}

#endif

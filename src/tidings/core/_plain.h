/*
 * Records a cyclic garbage collector need not watch, shared by tidings' C modules.
 *
 * A record (a tuple subclass of topic, partition, offset, timestamp, key, value, headers)
 * holding only strings, integers, bytes, None and tuples of those cannot be part of a
 * reference cycle, so it is not tracked by the collector, as CPython does for such plain
 * tuples. Thousands of records read at once then add nothing for the collector to scan,
 * however long the application keeps them. Only public C API is used (see
 * TIDINGS_TUPLE_IS_ITEMS for how a record is made on each Python).
 */
#ifndef TIDINGS_PLAIN_H
#define TIDINGS_PLAIN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Whether `v` is a value no reference cycle can pass through: None, or an exact str,
 * int or bytes. */
static inline int
is_plain(PyObject *v)
{
    return v == Py_None || PyUnicode_CheckExact(v) || PyLong_CheckExact(v)
           || PyBytes_CheckExact(v);
}

/* Whether every item of the tuple `fields` is plain, or an exact tuple of exact tuples
 * of plain values (a record's headers). */
static inline int
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

/* `r`, a new record of type `record` (or NULL), untracked when it holds only plain
 * values and its type has no __dict__ that could hold anything. */
static inline PyObject *
untracked_if_plain(PyTypeObject *record, PyObject *r)
{
    if (r != NULL && record->tp_dictoffset == 0 && holds_only_plain_values(r)) {
        PyObject_GC_UnTrack(r);
    }
    return r;
}

/*
 * Up to 3.13 a tuple holds nothing but its items, and tuple.__new__ of a subclass comes
 * down to tp_alloc and the items: done here directly, without packing the arguments and
 * parsing them again, which would add a third to the cost of a record made from
 * librdkafka's message. 3.14 also caches a tuple's hash, which only tuple's own
 * constructor sets up, so from 3.14 on the record is made by it.
 */
#define TIDINGS_TUPLE_IS_ITEMS (PY_VERSION_HEX < 0x030E0000)

/* A `record` (a tuple subclass) holding the items of the tuple `fields`, untracked when
 * they are plain; a new reference. */
static inline PyObject *
plain_record(PyTypeObject *record, PyObject *fields)
{
#if TIDINGS_TUPLE_IS_ITEMS
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    PyObject *r = record->tp_alloc(record, n);
    if (r != NULL) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyTuple_SET_ITEM(r, i, Py_NewRef(PyTuple_GET_ITEM(fields, i)));
        }
    }
#else
    PyObject *args = PyTuple_Pack(1, fields);
    if (args == NULL) {
        return NULL;
    }
    PyObject *r = PyTuple_Type.tp_new(record, args, NULL);
    Py_DECREF(args);
#endif
    return untracked_if_plain(record, r);
}

/* A `record` holding the `n` values of `items`, whose references it takes (dropping
 * them when it fails), untracked when they are plain; a new reference. */
static inline PyObject *
plain_record_of(PyTypeObject *record, PyObject *const *items, Py_ssize_t n)
{
#if TIDINGS_TUPLE_IS_ITEMS
    PyObject *r = record->tp_alloc(record, n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (r != NULL) {
            PyTuple_SET_ITEM(r, i, items[i]);
        }
        else {
            Py_DECREF(items[i]);
        }
    }
    return untracked_if_plain(record, r);
#else
    PyObject *fields = PyTuple_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (fields != NULL) {
            PyTuple_SET_ITEM(fields, i, items[i]);
        }
        else {
            Py_DECREF(items[i]);
        }
    }
    if (fields == NULL) {
        return NULL;
    }
    PyObject *r = plain_record(record, fields);
    Py_DECREF(fields);
    return r;
#endif
}

/* Whether `record` is a type plain_record can make: a subclass of tuple. */
static inline int
is_record_type(PyObject *record)
{
    return PyType_Check(record) && PyType_IsSubtype((PyTypeObject *)record, &PyTuple_Type);
}

#endif

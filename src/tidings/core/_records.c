/*
 * Records from rows of their fields, made in C: the read path of every stored batch.
 *
 * records(record, rows) -> list
 *
 * Each tuple of the iterable `rows` becomes a `record` (a tuple subclass), untracked by
 * the cyclic garbage collector when it holds only plain values (see _plain.h): records
 * read by the thousand then cost the collector nothing, without switching it off. The
 * same result as _records_in_python in records.py, which stands in where this module was
 * not built.
 */
#include "_plain.h"

static PyObject *
records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !is_record_type(args[0])) {
        PyErr_SetString(PyExc_TypeError, "records(record: a tuple subclass, rows: iterable)");
        return NULL;
    }
    PyTypeObject *record = (PyTypeObject *)args[0];
    PyObject *rows = PyObject_GetIter(args[1]);
    if (rows == NULL) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    PyObject *row;
    while (out != NULL && (row = PyIter_Next(rows)) != NULL) {
        PyObject *r = NULL;
        if (PyTuple_CheckExact(row)) {
            r = plain_record(record, row);
        }
        else {
            PyErr_Format(PyExc_TypeError, "records(): a row must be a tuple, not %.200s",
                         Py_TYPE(row)->tp_name);
        }
        Py_DECREF(row);
        if (r == NULL || PyList_Append(out, r) < 0) {
            Py_XDECREF(r);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(r);
    }
    Py_DECREF(rows);
    if (out != NULL && PyErr_Occurred()) {
        Py_CLEAR(out);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"records", (PyCFunction)(void (*)(void))records, METH_FASTCALL,
     "records(record, rows) -> list: a `record` of each tuple of `rows`, untracked by the "
     "cyclic garbage collector when it holds only plain values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tidings.core._records",
    .m_doc = "Records from rows of their fields, made in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__records(void)
{
    return PyModule_Create(&module);
}

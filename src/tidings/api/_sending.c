/*
 * The producer's send() for the common record, in C: a kernel that knows its own state
 * and the callables it is given, nothing of the producer that holds it.
 *
 *   Sender(lock, spec_of, partition_for_key, future_type, seal, fallback, batch_size,
 *          buffer_memory)
 *
 * holds what a send reads and writes on every record: `open`, the open batches by
 * (topic, partition); `sticky`, per topic the open batch of its sticky partition;
 * `buffered`, the bytes waiting to be stored; `closed`. Its send() takes the common
 * record (bytes value, bytes or no key, no headers, no timestamp given, a topic
 * `spec_of` knows, room in the buffer and an open batch to join) under `lock`: it
 * appends the record to the batch's columns, calls `seal(batch)` once the batch is full,
 * and returns a `future_type` (a FutureCore) pointing at the record. Any other call
 * goes to `fallback` with the same arguments, which also raises every error about a
 * record: the fast path only ever leaves before it has changed anything, so the two
 * never both take a record.
 *
 *   BatchCore: an open batch's columns (values, timestamps, keys) and its size.
 *   FutureCore: the batch and index a record's future points at.
 *
 * A send costs about a quarter of the Python one.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

#include <time.h>

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

/* -- FutureCore -------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *batch;
    Py_ssize_t index;
} FutureCore;

static int
future_traverse(FutureCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->batch);
    return 0;
}

static int
future_clear(FutureCore *self)
{
    Py_CLEAR(self->batch);
    return 0;
}

static void
future_dealloc(PyObject *self)
{
    dealloc(self, (inquiry)future_clear);
}

static PyMemberDef future_members[] = {
    {"_batch", T_OBJECT_EX, offsetof(FutureCore, batch), 0, "The batch the record joined."},
    {"_index", T_PYSSIZET, offsetof(FutureCore, index), 0, "The record's place in it."},
    {NULL},
};

static PyType_Slot future_slots[] = {
    {Py_tp_doc, "The fields of a record's future: its batch and its index in it."},
    {Py_tp_traverse, future_traverse},
    {Py_tp_clear, future_clear},
    {Py_tp_dealloc, future_dealloc},
    {Py_tp_members, future_members},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec future_spec = {
    .name = "tidings.api._sending.FutureCore",
    .basicsize = sizeof(FutureCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = future_slots,
};

/* -- BatchCore --------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *values;
    PyObject *timestamps;
    PyObject *keys;
    Py_ssize_t size;
} BatchCore;

static int
batch_traverse(BatchCore *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->values);
    Py_VISIT(self->timestamps);
    Py_VISIT(self->keys);
    return 0;
}

static int
batch_clear(BatchCore *self)
{
    Py_CLEAR(self->values);
    Py_CLEAR(self->timestamps);
    Py_CLEAR(self->keys);
    return 0;
}

static void
batch_dealloc(PyObject *self)
{
    dealloc(self, (inquiry)batch_clear);
}

static PyMemberDef batch_members[] = {
    {"values", T_OBJECT_EX, offsetof(BatchCore, values), 0, "The records' values."},
    {"timestamps", T_OBJECT_EX, offsetof(BatchCore, timestamps), 0, "Their timestamps."},
    {"keys", T_OBJECT_EX, offsetof(BatchCore, keys), 0, "Their keys; None while none has one."},
    {"size", T_PYSSIZET, offsetof(BatchCore, size), 0, "Bytes of keys, values and headers."},
    {NULL},
};

static PyType_Slot batch_slots[] = {
    {Py_tp_doc, "The columns of an open batch that every send appends to."},
    {Py_tp_traverse, batch_traverse},
    {Py_tp_clear, batch_clear},
    {Py_tp_dealloc, batch_dealloc},
    {Py_tp_members, batch_members},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec batch_spec = {
    .name = "tidings.api._sending.BatchCore",
    .basicsize = sizeof(BatchCore),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = batch_slots,
};

/* -- Sender ------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *lock, *acquire, *release; /* the lock and its two methods, bound */
    PyObject *open;
    PyObject *sticky;
    PyObject *spec_of;
    PyObject *partition_for_key;
    PyObject *future_type;
    PyObject *seal;
    PyObject *fallback;
    Py_ssize_t buffered;
    Py_ssize_t buffer_memory;
    Py_ssize_t batch_size;
    char closed;
    /* the last spec spec_of gave (specs are frozen), read once */
    PyObject *spec;
    long long partitions, max_bytes;
    /* the last timestamp stamped: the records of one millisecond share it */
    PyObject *stamp;
    long long stamp_ms;
} Sender;

/* Module-wide: set once at import (the module holds no per-interpreter state). */
static PyTypeObject *batch_type;
static PyTypeObject *future_type;
static PyObject *s_acquire, *s_release, *s_partitions, *s_config, *s_max_message_bytes, *s_key,
    *s_headers, *s_partition, *s_timestamp;

static int
sender_traverse(Sender *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->lock);
    Py_VISIT(self->acquire);
    Py_VISIT(self->release);
    Py_VISIT(self->open);
    Py_VISIT(self->sticky);
    Py_VISIT(self->spec_of);
    Py_VISIT(self->partition_for_key);
    Py_VISIT(self->future_type);
    Py_VISIT(self->seal);
    Py_VISIT(self->fallback);
    Py_VISIT(self->spec);
    return 0;
}

static int
sender_clear(Sender *self)
{
    Py_CLEAR(self->lock);
    Py_CLEAR(self->acquire);
    Py_CLEAR(self->release);
    Py_CLEAR(self->open);
    Py_CLEAR(self->sticky);
    Py_CLEAR(self->spec_of);
    Py_CLEAR(self->partition_for_key);
    Py_CLEAR(self->future_type);
    Py_CLEAR(self->seal);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->spec);
    Py_CLEAR(self->stamp);
    return 0;
}

static void
sender_dealloc(PyObject *self)
{
    dealloc(self, (inquiry)sender_clear);
}

/* What the fast path needs of one call, its arguments unpacked. */
typedef struct {
    PyObject *topic, *value, *key, *partition;
    Py_ssize_t size; /* bytes of value and key */
    long long p;     /* the partition; -1 for the topic's sticky one */
} Record;

/* 1 when the call is send(topic, value, [key=, partition=, headers=None,
 * timestamp=None]) with the common types, 0 when the fallback must take it. */
static int
unpack(Record *r, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 2) {
        return 0;
    }
    r->topic = args[0];
    r->value = args[1];
    r->key = r->partition = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject *v = args[nargs + i];
        /* keyword names from Python source are interned: compared by identity */
        if (name == s_key) {
            r->key = v;
        }
        else if (name == s_partition) {
            r->partition = v;
        }
        else if ((name != s_headers && name != s_timestamp) || v != Py_None) {
            return 0;
        }
    }
    if (!PyUnicode_CheckExact(r->topic) || !PyBytes_CheckExact(r->value)) {
        return 0;
    }
    r->size = PyBytes_GET_SIZE(r->value);
    if (r->key != Py_None) {
        if (!PyBytes_CheckExact(r->key)) {
            return 0;
        }
        r->size += PyBytes_GET_SIZE(r->key);
    }
    return r->partition == Py_None || PyLong_CheckExact(r->partition);
}

/* The integer attribute `name` of `obj` into *out: 1, or 0 when it is not an int that
 * fits, -1 on error. */
static int
int_attr(PyObject *obj, PyObject *name, long long *out)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        return -1;
    }
    int overflow = 0, exact = PyLong_CheckExact(v);
    *out = exact ? PyLong_AsLongLongAndOverflow(v, &overflow) : -1;
    Py_DECREF(v);
    return exact && !overflow && *out >= 0 ? 1 : 0;
}

/* Check `r` against the topic's spec and choose its partition: 1, 0 for the fallback (a
 * record it refuses or routes itself), -1 on error. */
static int
place(Sender *self, Record *r)
{
    PyObject *spec = PyObject_Vectorcall(self->spec_of, &r->topic, 1, NULL);
    if (spec == NULL || spec == Py_None) {
        Py_XDECREF(spec);
        return spec == NULL ? -1 : 0;
    }
    long long partitions = self->partitions, max_bytes = self->max_bytes;
    if (spec != self->spec) {
        int ok = int_attr(spec, s_partitions, &partitions);
        if (ok == 1) {
            PyObject *config = PyObject_GetAttr(spec, s_config);
            ok = config == NULL ? -1 : int_attr(config, s_max_message_bytes, &max_bytes);
            Py_XDECREF(config);
        }
        if (ok != 1) {
            Py_DECREF(spec);
            return ok;
        }
        /* the numbers before the spec they belong to; the old spec freed last */
        PyObject *old = self->spec;
        self->partitions = partitions;
        self->max_bytes = max_bytes;
        self->spec = Py_NewRef(spec);
        Py_XDECREF(old);
    }
    Py_DECREF(spec);
    if (r->size > max_bytes || r->size > self->buffer_memory) {
        return 0;
    }
    if (r->partition != Py_None) {
        int overflow = 0;
        r->p = PyLong_AsLongLongAndOverflow(r->partition, &overflow);
        return !overflow && r->p >= 0 && r->p < partitions; /* out of range: refreshed */
    }
    if (partitions == 1) {
        r->p = 0;
        return 1;
    }
    if (r->key == Py_None) {
        r->p = -1;
        return 1;
    }
    PyObject *count = PyLong_FromLongLong(partitions);
    if (count == NULL) {
        return -1;
    }
    PyObject *call[2] = {r->key, count};
    PyObject *p = PyObject_Vectorcall(self->partition_for_key, call, 2, NULL);
    Py_DECREF(count);
    if (p == NULL) {
        return -1;
    }
    r->p = PyLong_AsLongLong(p);
    Py_DECREF(p);
    return r->p == -1 && PyErr_Occurred() ? -1 : 1;
}

/* The open batch `r` joins (borrowed), NULL when there is none yet. Lock held. */
static PyObject *
open_batch(Sender *self, Record *r)
{
    if (r->p < 0) {
        return PyDict_GetItemWithError(self->sticky, r->topic);
    }
    PyObject *partition = PyLong_FromLongLong(r->p);
    if (partition == NULL) {
        return NULL;
    }
    PyObject *where = PyTuple_Pack(2, r->topic, partition);
    Py_DECREF(partition);
    if (where == NULL) {
        return NULL;
    }
    PyObject *batch = PyDict_GetItemWithError(self->open, where);
    Py_DECREF(where);
    return batch;
}

/* Set `key` as the key of record `index` of `batch`, the last one added: the key column is
 * made, or filled with None up to `index`, when records before had none. */
static int
add_key(BatchCore *batch, PyObject *key, Py_ssize_t index)
{
    if (batch->keys == Py_None) {
        PyObject *keys = PyList_New(0);
        if (keys == NULL) {
            return -1;
        }
        Py_SETREF(batch->keys, keys);
    }
    while (PyList_GET_SIZE(batch->keys) < index) {
        if (PyList_Append(batch->keys, Py_None) < 0) {
            return -1;
        }
    }
    return PyList_Append(batch->keys, key);
}

/* Append `r` to `batch`, stamped `ts`, and seal the batch once full. Lock held. */
static int
append(Sender *self, BatchCore *batch, Record *r, Py_ssize_t index, PyObject *ts)
{
    if (PyList_Append(batch->values, r->value) < 0 || PyList_Append(batch->timestamps, ts) < 0) {
        return -1;
    }
    if (r->key != Py_None && add_key(batch, r->key, index) < 0) {
        return -1;
    }
    batch->size += r->size;
    self->buffered += r->size;
    if (batch->size < self->batch_size) {
        return 0;
    }
    PyObject *done = PyObject_CallOneArg(self->seal, (PyObject *)batch);
    Py_XDECREF(done);
    return done == NULL ? -1 : 0;
}

/* The wall clock's milliseconds as an int (a new reference), as time_ns() // 1_000_000.
 * C11's clock, the one time.time_ns() reads, is read the same way on every Python. */
static PyObject *
stamp(Sender *self)
{
    struct timespec now;
    if (timespec_get(&now, TIME_UTC) != TIME_UTC) {
        PyErr_SetString(PyExc_OSError, "the wall clock could not be read");
        return NULL;
    }
    long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (self->stamp == NULL || ms != self->stamp_ms) {
        PyObject *made = PyLong_FromLongLong(ms);
        if (made == NULL) {
            return NULL;
        }
        Py_XSETREF(self->stamp, made);
        self->stamp_ms = ms;
    }
    return Py_NewRef(self->stamp);
}

/* Call the lock's bound `method` (acquire or release): its result, a new reference. The
 * method is held while it runs: acquire() lets other threads run while it waits. */
static PyObject *
lock_call(PyObject *method)
{
    Py_INCREF(method);
    PyObject *result = PyObject_Vectorcall(method, NULL, 0, NULL);
    Py_DECREF(method);
    return result;
}

/* Release the lock, keeping the error already raised, if any (an error of release()
 * itself, which a held lock never gives, would take its place). */
static int
unlock(Sender *self)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *raised = PyErr_GetRaisedException();
#else
    PyObject *type, *raised, *tb;
    PyErr_Fetch(&type, &raised, &tb);
#endif
    PyObject *released = lock_call(self->release);
    if (released == NULL) {
#if PY_VERSION_HEX < 0x030C0000
        Py_XDECREF(type);
        Py_XDECREF(tb);
#endif
        Py_XDECREF(raised);
        return -1;
    }
    Py_DECREF(released);
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(raised);
#else
    PyErr_Restore(type, raised, tb);
#endif
    return 0;
}

/* The record's future (fast path), NULL with no error set when the fallback must take
 * the record, NULL with an error set on failure. The future is made as its class's own
 * construction would make it, its fields set: future_type adds no __new__ or __init__. */
static PyObject *
send_fast(Sender *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Record r;
    if (self->closed || !unpack(&r, args, nargs, kwnames)) {
        return NULL;
    }
    int placed = place(self, &r);
    if (placed != 1) {
        return NULL;
    }
    PyObject *ts = stamp(self);
    if (ts == NULL) {
        return NULL;
    }
    PyObject *locked = lock_call(self->acquire);
    if (locked == NULL) {
        Py_DECREF(ts);
        return NULL;
    }
    Py_DECREF(locked);
    PyObject *future = NULL;
    int failed = 0;
    BatchCore *batch = NULL;
    /* full: the fallback waits for room off the loop; closed: it refuses (both under the
     * lock) */
    if (!self->closed && self->buffered + r.size <= self->buffer_memory) {
        batch = (BatchCore *)open_batch(self, &r);
        failed = batch == NULL && PyErr_Occurred();
    }
    if (batch != NULL && PyObject_TypeCheck(batch, batch_type) && PyList_CheckExact(batch->values)
        && PyList_CheckExact(batch->timestamps)
        && (batch->keys == Py_None || PyList_CheckExact(batch->keys))) {
        Py_INCREF(batch);
        Py_ssize_t index = PyList_GET_SIZE(batch->values);
        failed = append(self, batch, &r, index, ts) < 0;
        PyTypeObject *tp = (PyTypeObject *)self->future_type;
        future = failed ? NULL : tp->tp_alloc(tp, 0);
        if (future != NULL) {
            /* Its fields, a batch and an int, make no cycle of their own: untracked, the
             * futures an application holds (often all of them, until flushed) cost the
             * collector nothing, where they took a fifth of the sending thread. A cycle
             * through one lasts only while a task awaits its batch, which completes. */
            PyObject_GC_UnTrack(future);
            ((FutureCore *)future)->batch = Py_NewRef(batch);
            ((FutureCore *)future)->index = index;
        }
        failed = future == NULL;
        Py_DECREF(batch);
    }
    Py_DECREF(ts);
    if (unlock(self) < 0) {
        Py_CLEAR(future);
        return NULL;
    }
    if (failed && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_SystemError, "send failed without an error");
    }
    return future;
}

static PyObject *
sender_send(Sender *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *future = send_fast(self, args, nargs, kwnames);
    if (future != NULL || PyErr_Occurred()) {
        return future;
    }
    return PyObject_Vectorcall(self->fallback, args, nargs, kwnames);
}

static PyObject *
sender_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *lock, *spec_of, *partition_for_key, *futures, *seal, *fallback;
    Py_ssize_t batch_size, buffer_memory;
    static char *names[] = {"lock", "spec_of", "partition_for_key", "future_type", "seal",
                            "fallback", "batch_size", "buffer_memory", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOnn:Sender", names, &lock, &spec_of,
                                     &partition_for_key, &futures, &seal, &fallback,
                                     &batch_size, &buffer_memory)) {
        return NULL;
    }
    if (!PyType_Check(futures) || !PyType_IsSubtype((PyTypeObject *)futures, future_type)) {
        PyErr_SetString(PyExc_TypeError, "future_type must be a subclass of FutureCore");
        return NULL;
    }
    PyObject *acquire = PyObject_GetAttr(lock, s_acquire);
    PyObject *release = acquire == NULL ? NULL : PyObject_GetAttr(lock, s_release);
    Sender *self = release == NULL ? NULL : (Sender *)type->tp_alloc(type, 0);
    if (self == NULL) {
        Py_XDECREF(acquire);
        Py_XDECREF(release);
        return NULL;
    }
    self->lock = Py_NewRef(lock);
    self->acquire = acquire;
    self->release = release;
    self->spec_of = Py_NewRef(spec_of);
    self->partition_for_key = Py_NewRef(partition_for_key);
    self->future_type = Py_NewRef(futures);
    self->seal = Py_NewRef(seal);
    self->fallback = Py_NewRef(fallback);
    self->batch_size = batch_size;
    self->buffer_memory = buffer_memory;
    self->open = PyDict_New();
    self->sticky = PyDict_New();
    if (self->open == NULL || self->sticky == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyMemberDef sender_members[] = {
    {"open", T_OBJECT, offsetof(Sender, open), READONLY,
     "Open batches by (topic, partition)."},
    {"sticky", T_OBJECT, offsetof(Sender, sticky), READONLY,
     "Per topic, the open batch of its sticky partition."},
    {"seal", T_OBJECT_EX, offsetof(Sender, seal), 0,
     "Called with a batch once it is full (lock held)."},
    {"buffered", T_PYSSIZET, offsetof(Sender, buffered), 0, "Bytes waiting to be stored."},
    {"closed", T_BOOL, offsetof(Sender, closed), 0, "Whether sends are refused."},
    {NULL},
};

static PyMethodDef sender_methods[] = {
    {"send", (PyCFunction)(void (*)(void))sender_send, METH_FASTCALL | METH_KEYWORDS,
     "send($self, topic, value, *, key=None, headers=None, partition=None, timestamp=None)\n"
     "--\n\n"
     "Queue one record: the common one here, any other through the fallback."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot sender_slots[] = {
    {Py_tp_doc, "The state every send reads and writes, and send() for the common record."},
    {Py_tp_traverse, sender_traverse},
    {Py_tp_clear, sender_clear},
    {Py_tp_dealloc, sender_dealloc},
    {Py_tp_members, sender_members},
    {Py_tp_methods, sender_methods},
    {Py_tp_new, sender_new},
    {0, NULL},
};

static PyType_Spec sender_spec = {
    .name = "tidings.api._sending.Sender",
    .basicsize = sizeof(Sender),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = sender_slots,
};

/* -- module ------------------------------------------------------------------------ */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tidings.api._sending",
    .m_doc = "The producer's send() for the common record, in C: Sender, BatchCore, FutureCore.",
    .m_size = -1,
};

static int
intern_names(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&s_acquire, "acquire"},
        {&s_release, "release"},
        {&s_partitions, "partitions"},
        {&s_config, "config"},
        {&s_max_message_bytes, "max_message_bytes"},
        {&s_key, "key"},
        {&s_headers, "headers"},
        {&s_partition, "partition"},
        {&s_timestamp, "timestamp"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *names[i].slot = PyUnicode_InternFromString(names[i].text);
        if (*names[i].slot == NULL) {
            return -1;
        }
    }
    return 0;
}

static int
add_type(PyObject *m, PyType_Spec *spec, PyTypeObject **out)
{
    *out = (PyTypeObject *)PyType_FromSpec(spec);
    return *out == NULL ? -1 : PyModule_AddObjectRef(m, strrchr(spec->name, '.') + 1,
                                                     (PyObject *)*out);
}

PyMODINIT_FUNC
PyInit__sending(void)
{
    if (intern_names() < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    PyTypeObject *sender = NULL;
    if (m == NULL || add_type(m, &future_spec, &future_type) < 0
        || add_type(m, &batch_spec, &batch_type) < 0 || add_type(m, &sender_spec, &sender) < 0) {
        Py_XDECREF(m);
        return NULL;
    }
    Py_DECREF(sender);
    return m;
}

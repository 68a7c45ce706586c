/* samplez._speedups: the request path in C.
 *
 * What a request runs of samplez, and nothing else: the middleware's
 * call, the usual ``samplez.set`` (one config, a str key, a finite
 * number, in a request) and the fold of a plain request batch into the
 * process batch. Each does what its Python twin in batch.py and
 * middleware.py does; anything off the usual path (a Section, a counter,
 * a value to check, a clock that fails, the dashboard) is handed to that
 * twin, so errors and rules are written once, in Python.
 *
 * Why: in a gunicorn worker the request path's Python code runs cold,
 * and its bytecodes were most of what samplez cost a request
 * (docs/PERFORMANCE.md, bench/bench_instructions.py). The module is
 * optional: without a compiler, or with SAMPLEZ_PURE=1, the Python twins
 * run, and the tests run both.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <time.h>

/* Set once by setup(), from batch.py and middleware.py. */
static PyObject *request_var;   /* the ContextVar holding the request batch */
static PyObject *engine;        /* samplez.engine.engine */
static PyObject *py_set;        /* batch.python_set: every call off the usual path */
static PyObject *py_finish;     /* batch.python_finish: a batch with more than values */
static PyObject *py_clock_failed; /* batch.clock_failed: drops and logs a batch's samples */
static PyObject *side_key;      /* batch._SIDE */
static PyObject *flushing_type; /* middleware._Flushing */
static PyObject *time_time;     /* time.time, the default clock, which now() reads itself */

static PyObject *s_number_slot, *s_clock, *s_pending, *s_max_pending, *s_thread, *s_flush_mode;
static PyObject *s_request, *s_background, *s_trim, *s_start, *s_path_info, *s_empty;
static PyObject *s_serve_dashboard, *s_close, *one;

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *Py_NewRef(PyObject *o) { Py_INCREF(o); return o; }
static inline PyObject *Py_XNewRef(PyObject *o) { Py_XINCREF(o); return o; }
#endif

#define SMALL_INT ((1L << 30) - 1)

/* Were setup() (and, for the middleware, setup_middleware()) called? */
static int
ready(int middleware)
{
    if (request_var == NULL || (middleware && flushing_type == NULL)) {
        PyErr_SetString(PyExc_RuntimeError, "samplez._speedups.setup() was not called");
        return 0;
    }
    return 1;
}

/* What the request path reads of the engine, mirrored here as the engine
 * writes it (Engine.__setattr__ hands each write to mirror()): a request
 * made five dict lookups and a str comparison of the engine's attributes,
 * and now reads these. */
static struct {
    PyObject *pending;      /* engine._pending */
    PyObject *clock;        /* engine.clock */
    PyObject *thread;       /* engine._thread */
    Py_ssize_t max_pending; /* engine.max_pending */
    int request_mode;       /* engine.flush_mode == 'request' */
    int background_mode;    /* engine.flush_mode == 'background' */
} mirrored = {NULL, NULL, NULL, PY_SSIZE_T_MAX, 0, 0};

static PyObject *
sz_mirror(PyObject *module, PyObject *args)
{
    PyObject *name, *value;
    if (!PyArg_ParseTuple(args, "UO:mirror", &name, &value)) {
        return NULL;
    }
    if (PyUnicode_Compare(name, s_pending) == 0) {
        Py_XSETREF(mirrored.pending, Py_NewRef(value));
    }
    else if (PyUnicode_Compare(name, s_clock) == 0) {
        Py_XSETREF(mirrored.clock, Py_NewRef(value));
    }
    else if (PyUnicode_Compare(name, s_thread) == 0) {
        Py_XSETREF(mirrored.thread, Py_NewRef(value));
    }
    else if (PyUnicode_Compare(name, s_max_pending) == 0) {
        Py_ssize_t limit = PyLong_AsSsize_t(value);
        if (limit == -1 && PyErr_Occurred()) {
            return NULL;
        }
        mirrored.max_pending = limit;
    }
    else if (PyUnicode_Compare(name, s_flush_mode) == 0) {
        int request = PyObject_RichCompareBool(value, s_request, Py_EQ);
        int background = request < 0 ? -1 : PyObject_RichCompareBool(value, s_background, Py_EQ);
        if (background < 0) {
            return NULL;
        }
        mirrored.request_mode = request;
        mirrored.background_mode = background;
    }
    else {
        PyErr_Format(PyExc_ValueError, "mirror() takes _pending, clock, _thread, max_pending or flush_mode, got %R", name);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* 0 for a call's result (released), -1 for its failure. */
static int
done(PyObject *result)
{
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

/* -- the process batch ---------------------------------------------------- */

/* An event is (slot, key, value, when). Pending keeps each one as three
 * references and a time in a ring of records, one block of memory, instead
 * of a tuple each: a request's fold allocates nothing per event, and the
 * events waiting for the flusher (thousands, in a busy worker) no longer
 * fill the allocator's pools between the app's own short-lived objects,
 * where they slowed the app itself (docs/PERFORMANCE.md). The time is a
 * double, not the clock's float: a float kept per request until the flush
 * was one more object of each request's left in the pools, and one more
 * cold object for the flusher to free. Tuples are made when events are
 * read out, by the flusher. */
typedef struct {
    PyObject *slot, *key, *value;
    double when;
} Record;

/* Keys a fold has seen lately, by slot (see add()). */
#define RECENT_KEYS 16

typedef struct {
    PyObject_HEAD
    Record *items;        /* a ring: capacity is 0 or a power of two */
    Py_ssize_t head;      /* where the oldest event is */
    Py_ssize_t size;
    Py_ssize_t capacity;
    int discard;          /* Pending(maxlen=0): keeps nothing (bench stages) */
    PyObject *recent[RECENT_KEYS]; /* exact str keys, or NULL */
} Pending;

static PyTypeObject *pending_type;

#define RECORD(p, i) ((p)->items[((p)->head + (i)) & ((p)->capacity - 1)])
#define MIN_CAPACITY 64

static int
pending_reserve(Pending *self, Py_ssize_t more)
{
    if (self->size + more <= self->capacity) {
        return 0;
    }
    Py_ssize_t capacity = self->capacity ? self->capacity : MIN_CAPACITY;
    while (capacity < self->size + more) {
        if (capacity > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(Record)) {
            PyErr_NoMemory();
            return -1;
        }
        capacity *= 2;
    }
    Record *items = PyMem_Malloc(capacity * sizeof(Record));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->size; i++) {
        items[i] = RECORD(self, i);
    }
    PyMem_Free(self->items);
    self->items = items;
    self->head = 0;
    self->capacity = capacity;
    return 0;
}

/* The oldest event's references, handed to the caller. */
static Record
pending_pop(Pending *self)
{
    Record record = self->items[self->head];
    self->head = (self->head + 1) & (self->capacity - 1);
    self->size--;
    return record;
}

static void
record_release(Record record)
{
    Py_DECREF(record.slot);
    Py_DECREF(record.key);
    Py_DECREF(record.value);
}

/* Keeps new references to the three objects; room was reserved. Allocates
 * nothing, so no collection (and no finalizer) runs in a loop of these. */
static void
pending_push(Pending *self, PyObject *slot, PyObject *key, PyObject *value, double when, int left)
{
    if (self->discard) {
        return;
    }
    Record record = {Py_NewRef(slot), Py_NewRef(key), Py_NewRef(value), when};
    if (left) {
        self->head = (self->head - 1) & (self->capacity - 1);
        self->items[self->head] = record;
    }
    else {
        RECORD(self, self->size) = record;
    }
    self->size++;
}

/* An event as a tuple that takes the record's references (released if it
 * cannot be made); untracked when it holds no container, as the collector
 * has nothing to find in it. The references are the caller's, so a
 * collection run by the allocation cannot free them. */
static PyObject *
event_from(Record owned)
{
    PyObject *when = PyFloat_FromDouble(owned.when);
    PyObject *event = when == NULL ? NULL : PyTuple_New(4);
    if (event == NULL) {
        Py_XDECREF(when);
        record_release(owned);
        return NULL;
    }
    PyTuple_SET_ITEM(event, 0, owned.slot);
    PyTuple_SET_ITEM(event, 1, owned.key);
    PyTuple_SET_ITEM(event, 2, owned.value);
    PyTuple_SET_ITEM(event, 3, when);
    if (!PyObject_GC_IsTracked(owned.value)) {
        PyObject_GC_UnTrack(event);
    }
    return event;
}

static PyObject *
make_event(PyObject *slot, PyObject *key, PyObject *value, double when)
{
    Record owned = {Py_NewRef(slot), Py_NewRef(key), Py_NewRef(value), when};
    return event_from(owned);
}

/* Adds ``events`` (an iterable of events) on the right, or each before the
 * last on the left, once every one is checked and its time read: a
 * refused event adds none. They are read from a tuple of their own, which
 * nothing run by a time's conversion can change. */
static PyObject *
pending_add(Pending *self, PyObject *events, int left)
{
    PyObject *items = PySequence_Tuple(events);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    double *whens = PyMem_Malloc((count ? count : 1) * sizeof(double));
    if (whens == NULL) {
        Py_DECREF(items);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *event = PyTuple_GET_ITEM(items, i);
        if (!PyTuple_Check(event) || PyTuple_GET_SIZE(event) != 4) {
            PyErr_Format(PyExc_TypeError, "an event is a (slot, key, value, when) tuple, got %R", event);
            goto refused;
        }
        PyObject *when = PyTuple_GET_ITEM(event, 3);
        whens[i] = PyFloat_AsDouble(when);
        if (whens[i] == -1.0 && PyErr_Occurred()) {
            PyErr_Clear(); /* no number, or one too large for a float */
            PyErr_Format(PyExc_TypeError, "an event's time is a number of seconds, as a float, got %R", when);
            goto refused;
        }
    }
    if (pending_reserve(self, count) < 0) {
        goto refused;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject **event = &PyTuple_GET_ITEM(PyTuple_GET_ITEM(items, i), 0);
        pending_push(self, event[0], event[1], event[2], whens[i], left);
    }
    PyMem_Free(whens);
    Py_DECREF(items);
    Py_RETURN_NONE;
refused:
    PyMem_Free(whens);
    Py_DECREF(items);
    return NULL;
}

static PyObject *
Pending_extend(Pending *self, PyObject *events)
{
    return pending_add(self, events, 0);
}

static PyObject *
Pending_extendleft(Pending *self, PyObject *events)
{
    return pending_add(self, events, 1);
}

static PyObject *
Pending_append(Pending *self, PyObject *event)
{
    PyObject *one_event = PyTuple_Pack(1, event);
    if (one_event == NULL) {
        return NULL;
    }
    PyObject *result = pending_add(self, one_event, 0);
    Py_DECREF(one_event);
    return result;
}

static PyObject *
Pending_popleft(Pending *self, PyObject *unused)
{
    if (self->size == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from an empty Pending");
        return NULL;
    }
    return event_from(pending_pop(self));
}

/* -- one metric's events, as the flusher reads them ---------------------- */

/* take_groups() hands each metric its events as an Events: the records,
 * moved out of the ring, and the span of their times. A reservoir reads
 * only its length, that span and the few events it samples, each made a
 * tuple when read ([i]); a counter iterates them all. The tuples the
 * flusher used to make for every event, and the Python loop over their
 * times, were most of a busy flush (bench/bench_flush.py). */
typedef struct {
    PyObject_HEAD
    Record *items;
    Py_ssize_t size;
    double earliest, latest; /* of the events' times */
} Events;

static PyTypeObject *events_type;

static Events *
events_new(Py_ssize_t capacity)
{
    Record *items = PyMem_Malloc(capacity * sizeof(Record));
    if (items == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    Events *self = PyObject_GC_New(Events, events_type);
    if (self == NULL) {
        PyMem_Free(items);
        return NULL;
    }
    self->items = items;
    self->size = 0;
    self->earliest = Py_HUGE_VAL;
    self->latest = -Py_HUGE_VAL;
    PyObject_GC_Track(self);
    return self;
}

/* Takes the record's references; room was made by events_new. */
static void
events_push(Events *self, Record owned)
{
    self->items[self->size++] = owned;
    self->earliest = owned.when < self->earliest ? owned.when : self->earliest;
    self->latest = owned.when > self->latest ? owned.when : self->latest;
}

static Py_ssize_t
Events_length(Events *self)
{
    return self->size;
}

static PyObject *
Events_item(Events *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "Events index out of range");
        return NULL;
    }
    Record record = self->items[i];
    return make_event(record.slot, record.key, record.value, record.when);
}

/* (earliest, latest) of the events' times, or None when there are none. */
static PyObject *
Events_span(Events *self, PyObject *unused)
{
    if (self->size == 0) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(dd)", self->earliest, self->latest);
}

static int
Events_traverse(Events *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Py_VISIT(self->items[i].key);
        Py_VISIT(self->items[i].value);
    }
    return 0;
}

static int
Events_clear(Events *self)
{
    Record *items = self->items;
    Py_ssize_t size = self->size;
    self->items = NULL;
    self->size = 0;
    for (Py_ssize_t i = 0; i < size; i++) { /* detached first: destructors may run */
        record_release(items[i]);
    }
    PyMem_Free(items);
    return 0;
}

static void
Events_dealloc(Events *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Events_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(type);
}

static PyObject *
Events_repr(Events *self)
{
    return PyUnicode_FromFormat("<samplez Events: %zd>", self->size);
}

static PyMethodDef Events_methods[] = {
    {"span", (PyCFunction)Events_span, METH_NOARGS, "(earliest, latest) of the events' times; None if there are none."},
    {NULL},
};

static PyType_Slot Events_slots[] = {
    {Py_tp_doc, "One metric's events from Pending.take_groups(), oldest first; [i] is a (slot, key, value, when) tuple (samplez._speedups)."},
    {Py_tp_repr, Events_repr},
    {Py_tp_methods, Events_methods},
    {Py_sq_length, Events_length},
    {Py_sq_item, Events_item},
    {Py_tp_traverse, Events_traverse},
    {Py_tp_clear, Events_clear},
    {Py_tp_dealloc, Events_dealloc},
    {0, NULL},
};

static PyType_Spec Events_spec = {
    .name = "samplez._speedups.Events",
    .basicsize = sizeof(Events),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Events_slots,
};

/* Every event, removed: {slot: Events, oldest first}, the grouping the
 * flush starts from. The ring is detached first: what the allocations here
 * may run (a collection, a finalizer that sets) cannot reach its records,
 * and events added meanwhile wait for the next flush. */
static PyObject *
Pending_take_groups(Pending *self, PyObject *unused)
{
    Record *ring = self->items;
    Py_ssize_t head = self->head, size = self->size, capacity = self->capacity;
    self->items = NULL;
    self->head = self->size = self->capacity = 0;
#define AT(i) ring[(head + (i)) & (capacity - 1)]
    Py_ssize_t moved = 0, slots = 0;
    Py_ssize_t *counts = NULL;
    Events **by_slot = NULL;
    PyObject *groups = PyDict_New();
    if (groups == NULL) {
        goto failed;
    }
    for (Py_ssize_t i = 0; i < size; i++) { /* slots are metric numbers: a table is indexed by them */
        Py_ssize_t slot = PyLong_AsSsize_t(AT(i).slot);
        if (slot < 0) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ValueError, "an event's slot is an int >= 0");
            }
            goto failed;
        }
        slots = slot >= slots ? slot + 1 : slots;
    }
    counts = PyMem_Calloc(slots + 1, sizeof(Py_ssize_t));
    by_slot = PyMem_Calloc(slots + 1, sizeof(Events *));
    if (counts == NULL || by_slot == NULL) {
        PyErr_NoMemory();
        goto failed;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        counts[PyLong_AsSsize_t(AT(i).slot)]++;
    }
    for (Py_ssize_t slot = 0; slot < slots; slot++) {
        if (counts[slot] == 0) {
            continue;
        }
        PyObject *key = PyLong_FromSsize_t(slot);
        Events *events = key == NULL ? NULL : events_new(counts[slot]);
        int failed = events == NULL || PyDict_SetItem(groups, key, (PyObject *)events) < 0;
        Py_XDECREF(key);
        by_slot[slot] = events;
        Py_XDECREF(events); /* groups holds it */
        if (failed) {
            goto failed;
        }
    }
    for (; moved < size; moved++) { /* allocates nothing: no code runs */
        events_push(by_slot[PyLong_AsSsize_t(AT(moved).slot)], AT(moved));
    }
    goto done;
failed:
    Py_CLEAR(groups);
    for (Py_ssize_t i = moved; i < size; i++) {
        record_release(AT(i));
    }
done:
#undef AT
    PyMem_Free(counts);
    PyMem_Free(by_slot);
    if (self->items == NULL) { /* the ring is kept for the next events */
        self->items = ring;
        self->capacity = capacity;
    }
    else {
        PyMem_Free(ring);
    }
    return groups;
}

static PyObject *
Pending_clear_method(Pending *self, PyObject *unused)
{
    Record *items = self->items;
    Py_ssize_t head = self->head, size = self->size, capacity = self->capacity;
    self->items = NULL;
    self->head = self->size = self->capacity = 0;
    for (Py_ssize_t i = 0; i < size; i++) { /* detached first: destructors may run */
        record_release(items[(head + i) & (capacity - 1)]);
    }
    PyMem_Free(items);
    Py_RETURN_NONE;
}

static Py_ssize_t
Pending_length(Pending *self)
{
    return self->size;
}

static PyObject *
Pending_item(Pending *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->size) {
        PyErr_SetString(PyExc_IndexError, "Pending index out of range");
        return NULL;
    }
    Record record = RECORD(self, i);
    return make_event(record.slot, record.key, record.value, record.when);
}

static PyObject *
Pending_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"maxlen", NULL};
    PyObject *maxlen = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:Pending", keywords, &maxlen)) {
        return NULL;
    }
    int discard = 0;
    if (maxlen != Py_None) {
        discard = PyLong_Check(maxlen) && PyLong_AsLong(maxlen) == 0;
        if (!discard) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "Pending keeps every event (maxlen=None) or none (maxlen=0), got maxlen=%R", maxlen);
            return NULL;
        }
    }
    Pending *self = (Pending *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->discard = discard;
    }
    return (PyObject *)self;
}

static PyObject *
Pending_repr(Pending *self)
{
    return PyUnicode_FromFormat("<samplez Pending: %zd events>", self->size);
}

static int
Pending_traverse(Pending *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Record *record = &RECORD(self, i);
        Py_VISIT(record->key);
        Py_VISIT(record->value);
    }
    return 0;
}

static int
Pending_clear(Pending *self)
{
    Py_XDECREF(Pending_clear_method(self, NULL));
    for (int i = 0; i < RECENT_KEYS; i++) {
        Py_CLEAR(self->recent[i]);
    }
    return 0;
}

static void
Pending_dealloc(Pending *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Pending_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Pending_methods[] = {
    {"append", (PyCFunction)Pending_append, METH_O, "Add an event on the right."},
    {"extend", (PyCFunction)Pending_extend, METH_O, "Add events on the right, in order."},
    {"extendleft", (PyCFunction)Pending_extendleft, METH_O, "Add events on the left, each before the last (as deque.extendleft)."},
    {"popleft", (PyCFunction)Pending_popleft, METH_NOARGS, "Remove and return the oldest event."},
    {"clear", (PyCFunction)Pending_clear_method, METH_NOARGS, "Remove every event."},
    {"take_groups", (PyCFunction)Pending_take_groups, METH_NOARGS, "Remove every event: {slot: Events, oldest first}."},
    {NULL},
};

static PyType_Slot Pending_slots[] = {
    {Py_tp_doc, "Pending(maxlen=None): the process batch's events, in order, as a deque keeps them; maxlen=0 keeps none (samplez._speedups)."},
    {Py_tp_new, Pending_new},
    {Py_tp_repr, Pending_repr},
    {Py_tp_methods, Pending_methods},
    {Py_sq_length, Pending_length},
    {Py_sq_item, Pending_item},
    {Py_tp_traverse, Pending_traverse},
    {Py_tp_clear, Pending_clear},
    {Py_tp_dealloc, Pending_dealloc},
    {0, NULL},
};

static PyType_Spec Pending_spec = {
    .name = "samplez._speedups.Pending",
    .basicsize = sizeof(Pending),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Pending_slots,
};

/* -- the request batch ---------------------------------------------------- */

/* What a request's sets leave: one value per (slot, key), the last one
 * set, in the order the pairs first came; and, under batch._SIDE, what
 * batch.py's Python keeps besides (coin flips, counter values). A dict
 * keyed by (slot, key) tuples did this before: each set then built a
 * tuple and hashed it, and the request freed them all. Here a set is a
 * scan of the few entries a request holds (an index takes over past
 * LINEAR_MAX) and an append into storage inside the object.
 *
 * Values are numbers, or the str and int items counters take; the side
 * holds only those. Nothing in a batch can lead back to it, so it is not
 * tracked by the garbage collector. batch.py's Python reads and writes it
 * as the mapping it was: b[slot, key] = value, b[_SIDE], get, pop(_SIDE),
 * items, clear, len. */
typedef struct {
    Py_ssize_t slot;   /* compared */
    PyObject *slot_obj; /* the int the events carry */
    PyObject *key;
    PyObject *value;
} Entry;

#define INLINE_ENTRIES 8
#define LINEAR_MAX 16

typedef struct {
    PyObject_HEAD
    Entry *entries;     /* inline_entries, or a PyMem block when more */
    Py_ssize_t size;
    Py_ssize_t capacity;
    Py_ssize_t *index;  /* NULL, or (past LINEAR_MAX) open addressing: position + 1, 0 for free */
    Py_ssize_t mask;    /* the index's length - 1 */
    PyObject *side;     /* batch._SIDE's value, or NULL */
    char active;        /* its request's code runs: a set in its context lands here */
    char held;          /* a response body not yet closed will fold it */
    Entry inline_entries[INLINE_ENTRIES];
} Batch;

static PyTypeObject *batch_type;

static int
same_key(PyObject *a, PyObject *b)
{
    return a == b || (PyUnicode_GET_LENGTH(a) == PyUnicode_GET_LENGTH(b) && PyUnicode_Compare(a, b) == 0);
}

static Py_hash_t
entry_hash(Py_ssize_t slot, PyObject *key)
{
    Py_hash_t hash = PyObject_Hash(key);
    return hash == -1 ? -1 : hash ^ ((Py_hash_t)slot * 1000003);
}

/* Where the index has ``hash``'s entry, or the free place for it. */
static Py_ssize_t *
index_place(Batch *self, Py_hash_t hash, Py_ssize_t slot, PyObject *key)
{
    size_t i = (size_t)hash & (size_t)self->mask;
    for (size_t perturb = (size_t)hash;; perturb >>= 5) {
        Py_ssize_t at = self->index[i];
        if (at == 0 || (self->entries[at - 1].slot == slot && same_key(self->entries[at - 1].key, key))) {
            return &self->index[i];
        }
        i = (i * 5 + perturb + 1) & (size_t)self->mask;
    }
}

/* (Re)build the index for ``self->size`` entries and room to grow. */
static int
index_build(Batch *self)
{
    Py_ssize_t length = 64;
    while (length < self->size * 3) {
        length *= 2;
    }
    Py_ssize_t *index = PyMem_Calloc(length, sizeof(Py_ssize_t));
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(self->index);
    self->index = index;
    self->mask = length - 1;
    for (Py_ssize_t i = 0; i < self->size; i++) {
        Entry *entry = &self->entries[i];
        Py_hash_t hash = entry_hash(entry->slot, entry->key);
        if (hash == -1) { /* a str subclass's __hash__ raised: scan again */
            PyMem_Free(self->index);
            self->index = NULL;
            return -1;
        }
        *index_place(self, hash, entry->slot, entry->key) = i + 1;
    }
    return 0;
}

/* Position of (slot, key), -1 if absent, -2 on error; *place is set to the
 * index's place for it when there is an index. */
static Py_ssize_t
batch_find(Batch *self, Py_ssize_t slot, PyObject *key, Py_ssize_t **place)
{
    if (self->index == NULL) {
        for (Py_ssize_t i = 0; i < self->size; i++) {
            if (self->entries[i].slot == slot && same_key(self->entries[i].key, key)) {
                return i;
            }
        }
        return -1;
    }
    Py_hash_t hash = entry_hash(slot, key);
    if (hash == -1) {
        return -2;
    }
    *place = index_place(self, hash, slot, key);
    return **place - 1;
}

/* b[slot, key] = value; ``key`` is a str, ``slot_obj`` the int ``slot``. */
static int
batch_put(Batch *self, Py_ssize_t slot, PyObject *slot_obj, PyObject *key, PyObject *value)
{
    Py_ssize_t *place = NULL;
    Py_ssize_t at = batch_find(self, slot, key, &place);
    if (at == -2) {
        return -1;
    }
    if (at >= 0) {
        Py_SETREF(self->entries[at].value, Py_NewRef(value));
        return 0;
    }
    if (self->size == self->capacity) {
        if (self->capacity > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(Entry)) {
            PyErr_NoMemory();
            return -1;
        }
        Py_ssize_t capacity = self->capacity * 2;
        Entry *entries = PyMem_Malloc(capacity * sizeof(Entry));
        if (entries == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(entries, self->entries, self->size * sizeof(Entry));
        if (self->entries != self->inline_entries) {
            PyMem_Free(self->entries);
        }
        self->entries = entries;
        self->capacity = capacity;
    }
    self->entries[self->size++] = (Entry){slot, Py_NewRef(slot_obj), Py_NewRef(key), Py_NewRef(value)};
    if (place != NULL && self->size * 3 <= self->mask + 1) {
        *place = self->size;
        return 0;
    }
    if (self->size > LINEAR_MAX) { /* first index, or a larger one */
        return index_build(self);
    }
    return 0;
}

/* Forget the entries, whose references the caller took; the batch is
 * empty and takes new sets. */
static void
batch_forget(Batch *self)
{
    if (self->entries != self->inline_entries) {
        PyMem_Free(self->entries);
    }
    PyMem_Free(self->index);
    self->index = NULL;
    self->entries = self->inline_entries;
    self->size = 0;
    self->capacity = INLINE_ENTRIES;
}

/* Empty the batch, releasing its entries once they are out of it: a
 * destructor that runs then may set into it again. */
static void
batch_clear(Batch *self)
{
    Entry local[INLINE_ENTRIES];
    Py_ssize_t size = self->size;
    Entry *entries = self->entries;
    if (entries == self->inline_entries) {
        memcpy(local, entries, size * sizeof(Entry));
        entries = local;
    }
    else {
        self->entries = self->inline_entries; /* the block is freed below, not by batch_forget */
    }
    batch_forget(self);
    for (Py_ssize_t i = 0; i < size; i++) {
        Py_DECREF(entries[i].slot_obj);
        Py_DECREF(entries[i].key);
        Py_DECREF(entries[i].value);
    }
    if (entries != local) {
        PyMem_Free(entries);
    }
}

static Batch *
batch_new(void)
{
    Batch *self = PyObject_Malloc(sizeof(Batch));
    if (self == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyObject_Init((PyObject *)self, batch_type); /* takes a reference to the (heap) type */
    self->entries = self->inline_entries;
    self->size = 0;
    self->capacity = INLINE_ENTRIES;
    self->index = NULL;
    self->mask = 0;
    self->side = NULL;
    self->active = 1;
    self->held = 0;
    return self;
}

static PyObject *
Batch_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) || (kwargs != NULL && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "Batch() takes no arguments");
        return NULL;
    }
    return (PyObject *)batch_new();
}

static void
Batch_dealloc(Batch *self)
{
    PyTypeObject *type = Py_TYPE(self);
    batch_clear(self);
    Py_CLEAR(self->side);
    PyObject_Free(self);
    Py_DECREF(type);
}

/* A key as batch.py's Python writes it: 1 for batch._SIDE; 0 for a
 * (slot, key) pair, unpacked; -1 with TypeError for anything else. */
static int
batch_key(PyObject *item, Py_ssize_t *slot, PyObject **slot_obj, PyObject **key)
{
    if (item == side_key) {
        return 1;
    }
    if (PyTuple_Check(item) && PyTuple_GET_SIZE(item) == 2 && PyLong_Check(PyTuple_GET_ITEM(item, 0))
        && PyUnicode_Check(PyTuple_GET_ITEM(item, 1))) {
        *slot_obj = PyTuple_GET_ITEM(item, 0);
        *key = PyTuple_GET_ITEM(item, 1);
        *slot = PyLong_AsSsize_t(*slot_obj);
        return *slot == -1 && PyErr_Occurred() ? -1 : 0;
    }
    PyErr_Format(PyExc_TypeError, "a request batch is keyed by (slot: int, key: str) or batch._SIDE, got %R", item);
    return -1;
}

/* The value under ``item``: a borrowed reference, or NULL (with an
 * exception only on error). */
static PyObject *
batch_lookup(Batch *self, PyObject *item)
{
    Py_ssize_t slot, *place = NULL;
    PyObject *slot_obj, *key;
    int kind = batch_key(item, &slot, &slot_obj, &key);
    if (kind != 0) {
        return kind == 1 ? self->side : NULL;
    }
    Py_ssize_t at = batch_find(self, slot, key, &place);
    return at >= 0 ? self->entries[at].value : NULL;
}

static PyObject *
Batch_subscript(Batch *self, PyObject *item)
{
    PyObject *value = batch_lookup(self, item);
    if (value == NULL && !PyErr_Occurred()) {
        PyErr_SetObject(PyExc_KeyError, item);
    }
    return Py_XNewRef(value);
}

static int
Batch_ass_subscript(Batch *self, PyObject *item, PyObject *value)
{
    Py_ssize_t slot;
    PyObject *slot_obj, *key;
    int kind = batch_key(item, &slot, &slot_obj, &key);
    if (kind < 0) {
        return -1;
    }
    if (kind == 1) {
        if (value == NULL && self->side == NULL) {
            PyErr_SetObject(PyExc_KeyError, item);
            return -1;
        }
        Py_XSETREF(self->side, Py_XNewRef(value));
        return 0;
    }
    if (value == NULL) {
        PyErr_SetString(PyExc_TypeError, "a request batch's values are not deleted one by one (clear() empties it)");
        return -1;
    }
    return batch_put(self, slot, slot_obj, key, value);
}

static Py_ssize_t
Batch_length(Batch *self)
{
    return self->size + (self->side != NULL);
}

static int
Batch_contains(Batch *self, PyObject *item)
{
    return batch_lookup(self, item) != NULL ? 1 : PyErr_Occurred() ? -1 : 0;
}

static int
one_or_two(const char *name, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "%s expected 1 or 2 arguments, got %zd", name, nargs);
        return 0;
    }
    return 1;
}

static PyObject *
Batch_get(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!one_or_two("get", nargs)) {
        return NULL;
    }
    PyObject *value = batch_lookup(self, args[0]);
    if (value == NULL && !PyErr_Occurred()) {
        value = nargs == 2 ? args[1] : Py_None;
    }
    return Py_XNewRef(value);
}

/* pop(batch._SIDE[, default]): the only entry taken out alone. */
static PyObject *
Batch_pop(Batch *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (!one_or_two("pop", nargs)) {
        return NULL;
    }
    if (args[0] != side_key) {
        PyErr_SetString(PyExc_TypeError, "only batch._SIDE is popped from a request batch");
        return NULL;
    }
    PyObject *side = self->side;
    self->side = NULL;
    if (side == NULL) {
        if (nargs == 1) {
            PyErr_SetObject(PyExc_KeyError, args[0]);
            return NULL;
        }
        return Py_NewRef(args[1]);
    }
    return side;
}

static PyObject *
Batch_items(Batch *self, PyObject *unused)
{
    PyObject *items = PyList_New(0);
    for (Py_ssize_t i = 0; items != NULL && i < self->size; i++) {
        Entry *entry = &self->entries[i];
        PyObject *item = Py_BuildValue("((OO)O)", entry->slot_obj, entry->key, entry->value);
        if (item == NULL || PyList_Append(items, item) < 0) {
            Py_CLEAR(items);
        }
        Py_XDECREF(item);
    }
    if (items != NULL && self->side != NULL) {
        PyObject *item = PyTuple_Pack(2, side_key, self->side);
        if (item == NULL || PyList_Append(items, item) < 0) {
            Py_CLEAR(items);
        }
        Py_XDECREF(item);
    }
    return items;
}

static PyObject *
Batch_clear_method(Batch *self, PyObject *unused)
{
    batch_clear(self);
    Py_CLEAR(self->side);
    Py_RETURN_NONE;
}

static PyObject *
Batch_repr(Batch *self)
{
    return PyUnicode_FromFormat("<samplez request batch: %zd values%s>", self->size, self->side ? ", and more" : "");
}

static PyMethodDef Batch_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Batch_get, METH_FASTCALL, "b.get(key[, default])"},
    {"pop", (PyCFunction)(void (*)(void))Batch_pop, METH_FASTCALL, "b.pop(batch._SIDE[, default])"},
    {"items", (PyCFunction)Batch_items, METH_NOARGS, "[((slot, key), value), ...], in order, and batch._SIDE's last."},
    {"clear", (PyCFunction)Batch_clear_method, METH_NOARGS, "Remove everything."},
    {NULL},
};

static PyMemberDef Batch_members[] = {
    {"active", T_BOOL, offsetof(Batch, active), 0, "Does its request's code run? If not, a set made in its context is one event in the process batch."},
    {"held", T_BOOL, offsetof(Batch, held), 0, "Is a response body that will fold it still to be closed?"},
    {NULL},
};

static PyType_Slot Batch_slots[] = {
    {Py_tp_doc, "Batch(): one request's sets, one value per (slot, key) (samplez._speedups)."},
    {Py_tp_members, Batch_members},
    {Py_tp_new, Batch_new},
    {Py_tp_repr, Batch_repr},
    {Py_tp_methods, Batch_methods},
    {Py_mp_subscript, Batch_subscript},
    {Py_mp_ass_subscript, Batch_ass_subscript},
    {Py_mp_length, Batch_length},
    {Py_sq_contains, Batch_contains},
    {Py_tp_dealloc, Batch_dealloc},
    {0, NULL},
};

static PyType_Spec Batch_spec = {
    .name = "samplez._speedups.Batch",
    .basicsize = sizeof(Batch),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = Batch_slots,
};

/* What Engine.add/extend do once events are in: trim to max_pending, start
 * the flusher. ``size`` is the process batch's length. Returns 0 or -1. */
static int
settle(Py_ssize_t size)
{
    if (size > mirrored.max_pending && done(PyObject_CallMethodNoArgs(engine, s_trim)) < 0) {
        return -1;
    }
    if ((mirrored.thread != NULL && mirrored.thread != Py_None) || !mirrored.background_mode) {
        return 0;
    }
    return done(PyObject_CallMethodNoArgs(engine, s_start));
}

/* engine._pending if it is a Pending (a new reference), else NULL: any
 * other batch (a deque the engine was given, as a test may) is the Python
 * twin's. */
static Pending *
c_pending(void)
{
    PyObject *pending = mirrored.pending;
    if (pending == NULL || !Py_IS_TYPE(pending, pending_type)) {
        return NULL;
    }
    return (Pending *)Py_NewRef(pending);
}

/* ``key``, or the equal str a fold of ``slot`` kept lately. A view's key
 * is often a str made anew by each request (a path): the records keep the
 * one they saw first, and each request's own copy dies with the request,
 * its memory hot for the next one, instead of living in the pools until
 * the flush and being freed, cold, by the flusher. Takes and returns a
 * reference. Frees only str objects: no code runs. */
static PyObject *
kept_key(Pending *into, Py_ssize_t slot, PyObject *key)
{
    PyObject **seen = &into->recent[slot & (RECENT_KEYS - 1)];
    if (*seen == key || !PyUnicode_CheckExact(key)) {
        return key;
    }
    if (*seen != NULL && same_key(*seen, key)) {
        Py_DECREF(key);
        return Py_NewRef(*seen);
    }
    Py_XSETREF(*seen, Py_NewRef(key));
    return key;
}

/* Add to ``into`` the events of a request's ``batch``, which is left
 * empty, or, with ``batch`` NULL, the one event (slot, key, value), all
 * stamped ``when``; then settle(). */
static int
add(Pending *into, Batch *batch, PyObject *slot, PyObject *key, PyObject *value, double when)
{
    if (pending_reserve(into, batch == NULL ? 1 : batch->size) < 0) {
        return -1;
    }
    if (batch == NULL) {
        pending_push(into, slot, key, value, when, 0);
    }
    else if (into->discard) {
        batch_clear(batch);
    }
    else {
        /* The entries' references move to the records: no code runs. */
        for (Py_ssize_t i = 0; i < batch->size; i++) {
            Entry *entry = &batch->entries[i];
            PyObject *kept = kept_key(into, entry->slot, entry->key);
            RECORD(into, into->size) = (Record){entry->slot_obj, kept, entry->value, when};
            into->size++;
        }
        batch_forget(batch);
    }
    return settle(into->size);
}

/* The time events are stamped with, engine.clock(), in seconds; -1 with
 * an exception set when the clock fails or gives no number. The default
 * clock, time.time, is read here without a call or a float. */
static double
now(void)
{
    if (mirrored.clock == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "samplez: the engine's clock was not mirrored");
        return -1.0;
    }
    if (mirrored.clock == time_time) {
        struct timespec ts;
        if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
            return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9; /* as time.time() rounds */
        }
    }
    PyObject *clock = Py_NewRef(mirrored.clock); /* the call may replace it */
    PyObject *when = PyObject_CallNoArgs(clock);
    Py_DECREF(clock);
    if (when == NULL) {
        return -1.0;
    }
    double seconds = PyFloat_AsDouble(when);
    Py_DECREF(when);
    return seconds;
}

/* -- which slot a target's sets take ------------------------------------ */

/* target._samplez_number_slot, which a metric sets once, when it is made:
 * remembered for the last targets seen (by address, each checked through
 * a weak reference, so a target that died cannot be taken for a new object
 * at its address). A generic getattr of it was a quarter of a set. A
 * target has two places, its hash's and the one beside it, so two targets
 * with one hash, set in turn, do not evict each other on every set (with
 * one place, two of the bench's three configs did so in one run). */
#define TARGET_BITS 7
#define TARGETS (1 << TARGET_BITS)
typedef struct {
    PyObject *ref;  /* a weak reference to the target */
    PyObject *slot; /* its number slot, an int */
} Target;
static Target targets[TARGETS];

/* A new reference to the target's number slot (None: no fast path), or
 * NULL with an exception. */
static PyObject *
number_slot(PyObject *target)
{
    /* Fibonacci hashing: the address's bits mixed, the top ones kept
     * (metrics made one after another sit a power of two apart). */
    size_t i = (size_t)(((uint64_t)(uintptr_t)target * 0x9E3779B97F4A7C15u) >> (64 - TARGET_BITS));
    for (int probe = 0; probe < 2; probe++) {
        Target *place = &targets[i ^ (size_t)probe];
        if (place->ref != NULL && PyWeakref_GET_OBJECT(place->ref) == target && target != Py_None) {
            return Py_NewRef(place->slot);
        }
    }
    PyObject *slot = PyObject_GetAttr(target, s_number_slot);
    if (slot == NULL || !PyLong_CheckExact(slot) || !PyType_SUPPORTS_WEAKREFS(Py_TYPE(target))) {
        return slot;
    }
    PyObject *ref = PyWeakref_NewRef(target, NULL);
    if (ref == NULL) {
        Py_DECREF(slot);
        return NULL;
    }
    /* The hash's place takes the new target. A live one there moves to the
     * pair's other place: the last two seen with this hash are kept. */
    Target *home = &targets[i], *other = &targets[i ^ 1];
    if (home->ref != NULL && PyWeakref_GET_OBJECT(home->ref) != Py_None) {
        Py_XDECREF(other->ref);
        Py_XDECREF(other->slot);
        *other = *home;
    }
    else {
        Py_XDECREF(home->ref);
        Py_XDECREF(home->slot);
    }
    home->ref = ref;
    home->slot = Py_NewRef(slot);
    return slot;
}

/* -- set ----------------------------------------------------------------- */

static PyObject *
sz_set(PyObject *module, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 2 || nargs > 3 || request_var == NULL) {
        return PyObject_Vectorcall(py_set, args, nargsf, kwnames);
    }
    PyObject *target = args[0], *key = args[1];
    PyObject *value = nargs == 3 ? args[2] : one;
    if (!PyUnicode_CheckExact(key)) {
        return PyObject_Vectorcall(py_set, args, nargsf, NULL);
    }
    if (PyFloat_CheckExact(value)) {
        if (!isfinite(PyFloat_AS_DOUBLE(value))) {
            return PyObject_Vectorcall(py_set, args, nargsf, NULL);
        }
    }
    else if (PyLong_CheckExact(value)) {
        int overflow;
        long n = PyLong_AsLongAndOverflow(value, &overflow);
        if (overflow || n > SMALL_INT || n < -SMALL_INT) {
            return PyObject_Vectorcall(py_set, args, nargsf, NULL);
        }
    }
    else {
        return PyObject_Vectorcall(py_set, args, nargsf, NULL);
    }
    PyObject *slot = number_slot(target);
    if (slot == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
        return PyObject_Vectorcall(py_set, args, nargsf, NULL);
    }
    if (slot == Py_None) {
        Py_DECREF(slot);
        return PyObject_Vectorcall(py_set, args, nargsf, NULL);
    }
    PyObject *batch;
    if (PyContextVar_Get(request_var, NULL, &batch) < 0) {
        Py_DECREF(slot);
        return NULL;
    }
    if (batch != NULL && Py_IS_TYPE(batch, batch_type) && !((Batch *)batch)->active) {
        Py_CLEAR(batch); /* its response was produced, or closed: the thread is outside it */
    }
    if (batch == NULL || batch == Py_None) { /* outside a request: one event */
        Py_XDECREF(batch);
        Pending *into = c_pending();
        if (into == NULL) {
            Py_DECREF(slot);
            return PyObject_Vectorcall(py_set, args, nargsf, NULL);
        }
        double when = now();
        int failed = (when == -1.0 && PyErr_Occurred()) || add(into, NULL, slot, key, value, when) < 0;
        Py_DECREF(into);
        Py_DECREF(slot);
        if (failed) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    int failed = -1;
    if (Py_IS_TYPE(batch, batch_type)) {
        Py_ssize_t number = PyLong_AsSsize_t(slot);
        if (number != -1 || !PyErr_Occurred()) {
            failed = batch_put((Batch *)batch, number, slot, key, value);
        }
    }
    Py_DECREF(slot);
    Py_DECREF(batch);
    if (failed == -1 && !PyErr_Occurred()) { /* a batch of another kind: the Python twin's */
        return PyObject_Vectorcall(py_set, args, nargsf, NULL);
    }
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- finish: a request batch joins the process batch ---------------------- */

/* Returns 0, or -1 with an exception set (which the middleware reports as
 * unraisable: a failed fold costs the samples, never the response). */
static int
finish(PyObject *batch)
{
    if (!Py_IS_TYPE(batch, batch_type) || ((Batch *)batch)->side != NULL) {
        /* coin flips or counter values, or another kind of batch: the Python twin folds it */
        return done(PyObject_CallOneArg(py_finish, batch));
    }
    if (((Batch *)batch)->size == 0) {
        return 0;
    }
    Pending *into = c_pending();
    if (into == NULL) {
        return done(PyObject_CallOneArg(py_finish, batch));
    }
    double when = now();
    if (when == -1.0 && PyErr_Occurred()) { /* the samples are dropped, counted and logged */
        Py_DECREF(into);
        PyObject *type, *error, *traceback;
        PyErr_Fetch(&type, &error, &traceback);
        PyErr_NormalizeException(&type, &error, &traceback);
        if (traceback != NULL) {
            PyException_SetTraceback(error, traceback);
        }
        int result = done(PyObject_CallFunctionObjArgs(py_clock_failed, batch, error, NULL));
        Py_XDECREF(type);
        Py_XDECREF(error);
        Py_XDECREF(traceback);
        return result;
    }
    int result = add(into, (Batch *)batch, NULL, NULL, NULL, when);
    Py_DECREF(into);
    return result;
}

static PyObject *
sz_finish(PyObject *module, PyObject *batch)
{
    if (!ready(0)) {
        return NULL;
    }
    if (batch == Py_None) {
        Py_RETURN_NONE;
    }
    if (finish(batch) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* -- the body of a response still to be produced ------------------------- */

/* The twin of middleware._PythonClosing: the app's body, produced and
 * closed after the middleware returned. The request's batch stays the
 * thread's (request_var) until close(), so nothing copies or enters a
 * context per request or per chunk; it is active (a set lands in it) only
 * while a chunk is produced or the body closes, and in between the thread
 * is outside the request. close() folds the batch, which is then idle for
 * the context's next request, and, when the request had to set the variable
 * over another request's body still open, gives it back its value from
 * before (``token``; NULL when there is none to give back, or when the
 * middleware did that as it returned, inside another request's call). */
typedef struct {
    PyObject_HEAD
    PyObject *app_iter;
    Batch *batch;
    PyObject *token;  /* request_var's token, or NULL */
    PyObject *chunks; /* iter(app_iter), made at the first next() */
    char closed;
} Closing;

static PyTypeObject *closing_c_type;

static PyObject *
closing_make(PyTypeObject *type, PyObject *app_iter, PyObject *batch, PyObject *token)
{
    if (!Py_IS_TYPE(batch, batch_type) || !(token == Py_None || PyContextToken_CheckExact(token))) {
        PyErr_SetString(PyExc_TypeError, "Closing(app_iter, request_batch: Batch, token: Token or None)");
        return NULL;
    }
    Closing *self = (Closing *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->app_iter = Py_NewRef(app_iter);
    self->batch = (Batch *)Py_NewRef(batch);
    self->token = token == Py_None ? NULL : Py_NewRef(token);
    return (PyObject *)self;
}

static PyObject *
Closing_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *app_iter, *batch, *token;
    if ((kwargs != NULL && PyDict_GET_SIZE(kwargs)) || !PyArg_UnpackTuple(args, "Closing", 3, 3, &app_iter, &batch, &token)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "Closing takes no keyword arguments");
        }
        return NULL;
    }
    return closing_make(type, app_iter, batch, token);
}

static PyObject *
Closing_iter(PyObject *self)
{
    return Py_NewRef(self);
}

static PyObject *
Closing_next(Closing *self)
{
    PyObject *item = NULL;
    self->batch->active = !self->closed;
    if (self->chunks == NULL) {
        self->chunks = PyObject_GetIter(self->app_iter);
    }
    if (self->chunks != NULL) {
        item = PyIter_Next(self->chunks);
    }
    self->batch->active = 0;
    return item;
}

/* The thread leaves the request: request_var gets back its value from
 * before it, if it still holds this batch. In a context other than the
 * request's (a copy of it), the batch stays there, inactive. */
static void
closing_leave(Closing *self)
{
    PyObject *token = self->token, *current;
    if (token == NULL) {
        return;
    }
    self->token = NULL;
    if (PyContextVar_Get(request_var, NULL, &current) < 0) {
        PyErr_WriteUnraisable(request_var);
    }
    else {
        if (current == (PyObject *)self->batch && PyContextVar_Reset(request_var, token) < 0) {
            if (PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
            }
            else {
                PyErr_WriteUnraisable(request_var);
            }
        }
        Py_XDECREF(current);
    }
    Py_DECREF(token);
}

static PyObject *
Closing_close(Closing *self, PyObject *unused)
{
    int failed = 0;
    PyObject *close = PyObject_GetAttr(self->app_iter, s_close);
    if (close == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
        }
        else {
            failed = 1;
        }
    }
    else {
        self->batch->active = !self->closed;
        PyObject *result = PyObject_CallNoArgs(close);
        self->batch->active = 0;
        failed = result == NULL;
        Py_XDECREF(result);
        Py_DECREF(close);
    }
    /* The batch joins the process batch whatever close() did. */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    self->closed = 1;
    closing_leave(self);
    self->batch->held = 0;
    if (finish((PyObject *)self->batch) < 0) {
        PyErr_WriteUnraisable(py_finish);
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
Closing_traverse(Closing *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->app_iter);
    Py_VISIT(self->batch);
    Py_VISIT(self->token);
    Py_VISIT(self->chunks);
    return 0;
}

static int
Closing_clear(Closing *self)
{
    Py_CLEAR(self->app_iter);
    Py_CLEAR(self->batch);
    Py_CLEAR(self->token);
    Py_CLEAR(self->chunks);
    return 0;
}

static void
Closing_dealloc(Closing *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Closing_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMethodDef Closing_methods[] = {
    {"close", (PyCFunction)Closing_close, METH_NOARGS, "Close the app's body, then fold the batch and leave the request."},
    {NULL},
};

static PyType_Slot Closing_slots[] = {
    {Py_tp_doc, "A response body produced and closed with its request's batch (samplez._speedups)."},
    {Py_tp_new, Closing_new},
    {Py_tp_iter, Closing_iter},
    {Py_tp_iternext, Closing_next},
    {Py_tp_methods, Closing_methods},
    {Py_tp_traverse, Closing_traverse},
    {Py_tp_clear, Closing_clear},
    {Py_tp_dealloc, Closing_dealloc},
    {0, NULL},
};

static PyType_Spec Closing_spec = {
    .name = "samplez._speedups.Closing",
    .basicsize = sizeof(Closing),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Closing_slots,
};

/* -- the middleware's call ------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    PyObject *app;
    PyObject *dashboard_path;
} Base;

/* Is this a dashboard path? Returns 1 with *rest set (a new reference), 0,
 * or -1 on error. */
static int
dashboard_rest(Base *self, PyObject *environ, PyObject **rest)
{
    PyObject *prefix = self->dashboard_path;
    if (prefix == NULL || prefix == Py_None || !PyUnicode_Check(prefix)) {
        return 0;
    }
    PyObject *path;
    if (PyDict_CheckExact(environ)) {
        path = PyDict_GetItemWithError(environ, s_path_info);
        if (path == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        Py_INCREF(path);
    }
    else {
        path = PyObject_CallMethod(environ, "get", "OO", s_path_info, s_empty);
        if (path == NULL) {
            return -1;
        }
    }
    int found = 0;
    if (PyUnicode_Check(path)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(prefix), size = PyUnicode_GET_LENGTH(path);
        Py_ssize_t match = PyUnicode_Tailmatch(path, prefix, 0, PY_SSIZE_T_MAX, -1);
        if (match < 0) {
            Py_DECREF(path);
            return -1;
        }
        if (match && (size == n || PyUnicode_READ_CHAR(path, n) == '/')) {
            *rest = PyUnicode_Substring(path, n, size);
            found = *rest == NULL ? -1 : 1;
        }
    }
    Py_DECREF(path);
    return found;
}

static PyObject *
Base_call(Base *self, PyObject *args, PyObject *kwargs)
{
    PyObject *environ, *start_response;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "a WSGI app takes (environ, start_response)");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "Middleware", 2, 2, &environ, &start_response) || !ready(1)) {
        return NULL;
    }
    PyObject *rest = NULL;
    int dashboard = dashboard_rest(self, environ, &rest);
    if (dashboard < 0) {
        return NULL;
    }
    if (dashboard) {
        PyObject *page = PyObject_CallMethodObjArgs((PyObject *)self, s_serve_dashboard, environ, start_response, rest, NULL);
        Py_DECREF(rest);
        return page;
    }
    if (self->app == NULL) {
        PyErr_SetString(PyExc_AttributeError, "Middleware has no app");
        return NULL;
    }
    /* The context keeps its batch from one request to the next: the
     * variable is set once (per thread, in a sync worker), and a request
     * reuses the batch it finds there when that is idle (inactive, empty,
     * no body of it left to close). Setting and resetting the variable per
     * request made and freed two HAMT nodes and a token, a third of the
     * instructions samplez added to a request (callgrind of a worker,
     * docs/PERFORMANCE.md). */
    PyObject *before;
    if (PyContextVar_Get(request_var, NULL, &before) < 0) {
        return NULL;
    }
    /* a batch whose request's code is not running */
    Batch *resting = before != NULL && Py_IS_TYPE(before, batch_type) && !((Batch *)before)->active ? (Batch *)before : NULL;
    Batch *batch;
    PyObject *token = NULL;
    int inside = 0;
    if (resting != NULL && !resting->held && resting->size == 0 && resting->side == NULL) {
        batch = resting; /* the reference the variable's read gave */
        batch->active = 1;
    }
    else {
        /* The first request in this context, or one after a fold that
         * failed and left the batch there full: its batch becomes the
         * context's. Else the variable gets back what it held: inside
         * another request's call (a middleware inside another) as this
         * call returns, else (a body of an earlier request still to be
         * closed) when this request's body closes. */
        int first = before == NULL || before == Py_None || (resting != NULL && !resting->held);
        inside = !first && resting == NULL;
        Py_XDECREF(before);
        batch = batch_new();
        if (batch == NULL) {
            return NULL;
        }
        token = PyContextVar_Set(request_var, (PyObject *)batch);
        if (token == NULL) {
            Py_DECREF(batch);
            return NULL;
        }
        if (first) {
            Py_CLEAR(token);
        }
    }
    PyObject *call_args[2] = {environ, start_response};
    PyObject *app = self->app;
    Py_INCREF(app);
    PyObject *result = PyObject_Vectorcall(app, call_args, 2, NULL);
    Py_DECREF(app);
    batch->active = 0;
    int wrapped = 0;
    if (result != NULL && (mirrored.request_mode || !(PyList_CheckExact(result) || PyTuple_CheckExact(result)))) {
        /* Handler code may still run as the body is produced and closed:
         * the wrapper keeps the batch, and the thread in it, until close(). */
        PyObject *app_iter = result, *kept = inside || token == NULL ? Py_None : token;
        if (mirrored.request_mode) {
            PyObject *wrap_args[3] = {app_iter, (PyObject *)batch, kept};
            result = PyObject_Vectorcall(flushing_type, wrap_args, 3, NULL);
        }
        else {
            result = closing_make(closing_c_type, app_iter, (PyObject *)batch, kept);
        }
        Py_DECREF(app_iter);
        wrapped = result != NULL;
        batch->held = wrapped;
        if (wrapped && !inside) {
            Py_XDECREF(token);
            Py_DECREF(batch);
            return result;
        }
    }
    /* The thread leaves the request here, also when the app raised. */
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    if (token != NULL) {
        if (PyContextVar_Reset(request_var, token) < 0) {
            PyErr_WriteUnraisable(request_var);
        }
        Py_DECREF(token);
    }
    if (!wrapped && finish((PyObject *)batch) < 0) {
        /* Raised, or produced already: nothing of the request runs after
         * this. A fold that fails costs the samples, never the response. */
        PyErr_WriteUnraisable(py_finish);
    }
    PyErr_Restore(exc_type, exc_value, exc_tb);
    Py_DECREF(batch);
    return result;
}

static int
Base_traverse(Base *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->app);
    Py_VISIT(self->dashboard_path);
    return 0;
}

static int
Base_clear(Base *self)
{
    Py_CLEAR(self->app);
    Py_CLEAR(self->dashboard_path);
    return 0;
}

static void
Base_dealloc(Base *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Base_clear(self);
    type->tp_free((PyObject *)self);
    Py_DECREF(type);
}

static PyMemberDef Base_members[] = {
    {"app", T_OBJECT_EX, offsetof(Base, app), 0, "The wrapped WSGI application."},
    {"dashboard_path", T_OBJECT, offsetof(Base, dashboard_path), 0, "Where the dashboard answers (None: nowhere)."},
    {NULL},
};

static PyType_Slot Base_slots[] = {
    {Py_tp_doc, "The middleware's request path, in C (samplez._speedups)."},
    {Py_tp_call, Base_call},
    {Py_tp_members, Base_members},
    {Py_tp_traverse, Base_traverse},
    {Py_tp_clear, Base_clear},
    {Py_tp_dealloc, Base_dealloc},
    {0, NULL},
};

static PyType_Spec Base_spec = {
    .name = "samplez._speedups.MiddlewareBase",
    .basicsize = sizeof(Base),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Base_slots,
};

/* -- setup ---------------------------------------------------------------- */

static PyObject *
sz_setup(PyObject *module, PyObject *args)
{
    PyObject *var, *eng, *set_general, *finish_general, *clock_failed, *side;
    if (!PyArg_ParseTuple(args, "OOOOOO:setup", &var, &eng, &set_general, &finish_general, &clock_failed, &side)) {
        return NULL;
    }
    if (!PyContextVar_CheckExact(var)) {
        PyErr_SetString(PyExc_TypeError, "setup() needs the request ContextVar");
        return NULL;
    }
    Py_XSETREF(request_var, Py_NewRef(var));
    Py_XSETREF(engine, Py_NewRef(eng));
    Py_XSETREF(py_set, Py_NewRef(set_general));
    Py_XSETREF(py_finish, Py_NewRef(finish_general));
    Py_XSETREF(py_clock_failed, Py_NewRef(clock_failed));
    Py_XSETREF(side_key, Py_NewRef(side));
    Py_RETURN_NONE;
}

static PyObject *
sz_setup_middleware(PyObject *module, PyObject *args)
{
    PyObject *flushing;
    if (!PyArg_ParseTuple(args, "O:setup_middleware", &flushing)) {
        return NULL;
    }
    Py_XSETREF(flushing_type, Py_NewRef(flushing));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_doc,
"set($module, /, target, key, value=1)\n--\n\n"
"Record ``value`` for ``key`` in every config or counter of ``target``\n"
"(a Config, a counter, a Section, or an iterable of them).\n\n"
"Raises ``TypeError``/``ValueError`` here, at the call, for a value the\n"
"target cannot take (``bool``, ``None``, NaN, +-inf, a str for a reservoir)\n"
"or a key that is not text.\n\n"
">>> samplez.set(LATENCY, '/api/items', 124)");

static PyMethodDef methods[] = {
    {"set", (PyCFunction)(void (*)(void))sz_set, METH_FASTCALL | METH_KEYWORDS, set_doc},
    {"finish", sz_finish, METH_O, "Fold a request's batch into the process batch."},
    {"setup", sz_setup, METH_VARARGS, "Hand the module batch.py's objects: (request_var, engine, set, finish, clock_failed, side_key)."},
    {"mirror", sz_mirror, METH_VARARGS, "mirror(name, value): the engine's attribute ``name`` is now ``value``."},
    {"setup_middleware", sz_setup_middleware, METH_VARARGS, "Hand the module middleware.py's _Flushing (flush='request')."},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "samplez._speedups", "The request path in C.", -1, methods,
};

/* The type made from ``spec``, added to ``module`` as ``name``; the
 * module holds one reference and the other is the C code's, which checks
 * and makes instances through it, for the life of the process. NULL on
 * error. */
static PyTypeObject *
add_type(PyObject *module, PyType_Spec *spec, const char *name)
{
    PyObject *type = PyType_FromSpec(spec);
    if (type == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, name, type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return (PyTypeObject *)type;
}

#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC
PyInit__speedups(void)
{
    INTERN(s_number_slot, "_samplez_number_slot");
    INTERN(s_clock, "clock");
    INTERN(s_pending, "_pending");
    INTERN(s_max_pending, "max_pending");
    INTERN(s_thread, "_thread");
    INTERN(s_flush_mode, "flush_mode");
    INTERN(s_request, "request");
    INTERN(s_background, "background");
    INTERN(s_trim, "_trim");
    INTERN(s_start, "_start");
    INTERN(s_path_info, "PATH_INFO");
    INTERN(s_empty, "");
    INTERN(s_serve_dashboard, "_serve_dashboard");
    INTERN(s_close, "close");
    if ((one = PyLong_FromLong(1)) == NULL) {
        return NULL;
    }
    PyObject *time_module = PyImport_ImportModule("time");
    if (time_module == NULL) {
        return NULL;
    }
    time_time = PyObject_GetAttrString(time_module, "time");
    Py_DECREF(time_module);
    if (time_time == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (add_type(module, &Base_spec, "MiddlewareBase") == NULL
        || (closing_c_type = add_type(module, &Closing_spec, "Closing")) == NULL
        || (batch_type = add_type(module, &Batch_spec, "Batch")) == NULL
        || (events_type = add_type(module, &Events_spec, "Events")) == NULL
        || (pending_type = add_type(module, &Pending_spec, "Pending")) == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

//! Which unit a connection loads next: the order rules of a parallel restore.
//!
//! The same rules as pg_restore's parallel mode, made for a stream: units start in dump order,
//! except that a unit may overtake earlier ones it shares no table with. Two units that name the
//! same table (its data, then its indexes, then a foreign key that references it) never run at
//! once and keep their dump order, which also keeps two statements from locking the same tables
//! in opposite orders. A *barrier* unit (anything that is not a table's data, index, constraint or
//! a sequence value: schema, views, triggers, an unknown statement) runs alone, on the first
//! connection, after everything before it and before everything after it: where offsite cannot
//! classify, the restore is the single stream it would be without parallelism.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::spool::{Budget, Spool};

/// One unit of work.
pub struct Unit {
    pub seq: u64,
    /// What it is, for messages: `data of public.orders`, `schema statements`.
    pub label: String,
    /// Tables (and sequences) it touches; none: a barrier.
    pub keys: Vec<String>,
    /// Holds its keys shared: units that all hold a table shared (the parts of one big COPY block)
    /// run at once; any other unit on that table waits for them, and they for it.
    pub shared: bool,
    pub barrier: bool,
    /// Session statements (SET ...) in effect where it starts: the first this many of the log.
    pub session: usize,
    /// The log's length when the unit was complete: a unit that holds SET statements runs them.
    pub session_end: AtomicUsize,
    pub body: Spool,
}

impl Unit {
    pub fn new(seq: u64, label: String, keys: Vec<String>, session: usize, body: Spool) -> Self {
        Self {
            seq,
            label,
            barrier: keys.is_empty(),
            keys,
            shared: false,
            session,
            session_end: AtomicUsize::new(session),
            body,
        }
    }

    pub fn session_end(&self) -> usize {
        self.session_end.load(Ordering::Acquire)
    }
}

struct Entry {
    unit: Arc<Unit>,
    started: bool,
}

#[derive(Default)]
struct State {
    /// Not finished, in dump order.
    queue: VecDeque<Entry>,
    /// Keys of the running units.
    running: Vec<(u64, Vec<String>, bool)>,
    /// The reader has added its last unit.
    closed: bool,
    failed: bool,
}

#[derive(Default)]
pub struct Sched {
    state: Mutex<State>,
    changed: Condvar,
    /// Told when a connection waits for a unit to start ([`Budget::hungry`]).
    budget: Option<Arc<Budget>>,
}

impl Sched {
    pub fn new(budget: Arc<Budget>) -> Self {
        Self {
            budget: Some(budget),
            ..Self::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, unit: Arc<Unit>) {
        self.lock().queue.push_back(Entry {
            unit,
            started: false,
        });
        self.changed.notify_all();
    }

    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    pub fn fail(&self) {
        let mut s = self.lock();
        s.failed = true;
        for e in &s.queue {
            e.unit.body.fail();
        }
        drop(s);
        self.changed.notify_all();
    }

    pub fn failed(&self) -> bool {
        self.lock().failed
    }

    /// The next unit connection `conn` may start; waits; None when there is no more work (or a
    /// load failed).
    pub fn next(&self, conn: usize) -> Option<Arc<Unit>> {
        let mut s = self.lock();
        let mut hunger = None;
        loop {
            if s.failed {
                return None;
            }
            if let Some(i) = pick(&s, conn) {
                let e = &mut s.queue[i];
                e.started = true;
                let unit = e.unit.clone();
                s.running.push((unit.seq, unit.keys.clone(), unit.shared));
                drop(s);
                // Another waiting connection may now have read everything ahead: it is hungry.
                self.changed.notify_all();
                return Some(unit);
            }
            if s.closed && s.queue.iter().all(|e| e.started) {
                return None;
            }
            // Hungry only for what the reader has not reached: a unit that waits for a running
            // one (a barrier, a table in use) is already here, and reading on would only spool.
            if hunger.is_none() && s.queue.iter().all(|e| e.started) {
                hunger = self.budget.as_deref().map(Budget::hungry);
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn done(&self, seq: u64) {
        let mut s = self.lock();
        s.queue.retain(|e| e.unit.seq != seq);
        s.running.retain(|(q, _, _)| *q != seq);
        drop(s);
        self.changed.notify_all();
    }
}

/// The first unit, in dump order, that may start now on `conn`.
fn pick(s: &State, conn: usize) -> Option<usize> {
    // Keys of earlier units that have not started (and whether all of them hold it shared): a
    // later unit naming one must wait, unless both hold it shared.
    let mut ahead: HashMap<&str, bool> = HashMap::new();
    for (i, e) in s.queue.iter().enumerate() {
        if e.started {
            if e.unit.barrier {
                return None;
            }
            continue;
        }
        let u = &e.unit;
        if u.barrier {
            let alone = i == 0 && s.running.is_empty();
            return (alone && conn == 0).then_some(i);
        }
        let clash = |k: &String, shared: bool| !(u.shared && shared) && u.keys.contains(k);
        let busy = u
            .keys
            .iter()
            .any(|k| ahead.get(k.as_str()).is_some_and(|&sh| !(u.shared && sh)))
            || s.running
                .iter()
                .any(|(_, keys, shared)| keys.iter().any(|k| clash(k, *shared)));
        if !busy {
            return Some(i);
        }
        for k in &u.keys {
            let sh = ahead.entry(k.as_str()).or_insert(true);
            *sh &= u.shared;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::parallel::spool::Budget;

    fn unit(seq: u64, keys: &[&str], barrier: bool) -> Arc<Unit> {
        let budget = Arc::new(Budget::new(std::env::temp_dir(), 1 << 20, 1 << 20));
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(barrier, keys.is_empty());
        Arc::new(Unit::new(
            seq,
            format!("u{seq}"),
            keys,
            0,
            Spool::new(budget),
        ))
    }

    #[test]
    fn units_overtake_only_where_they_share_no_table() {
        let s = Sched::default();
        s.add(unit(0, &[], true));
        s.add(unit(1, &["a"], false));
        s.add(unit(2, &["b"], false));
        s.add(unit(3, &["a"], false));
        s.add(unit(4, &["c", "b"], false));
        s.add(unit(5, &[], true));
        s.add(unit(6, &["d"], false));
        s.close();
        // The barrier first, on the first connection only.
        assert_eq!(pick(&s.lock(), 1), None);
        let b = s.next(0).unwrap();
        assert_eq!(b.seq, 0);
        assert_eq!(pick(&s.lock(), 1), None, "nothing runs beside a barrier");
        s.done(0);
        assert_eq!(s.next(1).unwrap().seq, 1);
        assert_eq!(s.next(0).unwrap().seq, 2);
        // 3 waits for 1 (table a), 4 for 2 (table b): nothing may start.
        assert_eq!(pick(&s.lock(), 2), None);
        s.done(2);
        assert_eq!(s.next(2).unwrap().seq, 4);
        s.done(1);
        assert_eq!(s.next(1).unwrap().seq, 3);
        // The closing barrier waits for everything, and 6 waits for the barrier.
        assert_eq!(pick(&s.lock(), 0), None);
        s.done(3);
        s.done(4);
        assert_eq!(pick(&s.lock(), 1), None);
        assert_eq!(s.next(0).unwrap().seq, 5);
        s.done(5);
        assert_eq!(s.next(1).unwrap().seq, 6);
        s.done(6);
        assert!(s.next(0).is_none());
    }

    #[test]
    fn parts_of_one_table_run_at_once_and_its_index_waits_for_all() {
        let part = |seq: u64| {
            let mut u = Arc::try_unwrap(unit(seq, &["a"], false)).ok().unwrap();
            u.shared = true;
            Arc::new(u)
        };
        let s = Sched::default();
        s.add(part(0));
        s.add(part(1));
        s.add(unit(2, &["a"], false));
        s.add(part(3));
        s.close();
        assert_eq!(s.next(0).unwrap().seq, 0);
        assert_eq!(s.next(1).unwrap().seq, 1);
        // The index waits for both parts, and the part after it for the index.
        assert_eq!(pick(&s.lock(), 2), None);
        s.done(0);
        assert_eq!(pick(&s.lock(), 2), None);
        s.done(1);
        assert_eq!(s.next(2).unwrap().seq, 2);
        assert_eq!(pick(&s.lock(), 0), None);
        s.done(2);
        assert_eq!(s.next(0).unwrap().seq, 3);
    }

    #[test]
    fn a_connection_is_hungry_only_for_units_the_reader_has_not_reached() {
        let budget = Arc::new(Budget::new(std::env::temp_dir(), 1 << 20, 1 << 20));
        let s = Arc::new(Sched::new(budget.clone()));
        s.add(unit(0, &["a"], false));
        s.add(unit(1, &["a"], false));
        assert_eq!(s.next(0).unwrap().seq, 0);
        let wait = |conn| {
            let s = s.clone();
            std::thread::spawn(move || s.next(conn).map(|u| u.seq))
        };
        let settle = || std::thread::sleep(std::time::Duration::from_millis(50));
        // Unit 1 is read but waits for unit 0's table: reading on would not help.
        let second = wait(1);
        settle();
        assert_eq!(budget.hungry_now(), 0);
        s.done(0);
        assert_eq!(second.join().unwrap(), Some(1));
        // Nothing left that the reader has reached: the connection waits for the reader.
        let third = wait(0);
        settle();
        assert_eq!(budget.hungry_now(), 1);
        s.add(unit(2, &["b"], false));
        assert_eq!(third.join().unwrap(), Some(2));
        assert_eq!(budget.hungry_now(), 0);
    }

    #[test]
    fn a_failure_ends_every_wait() {
        let s = Arc::new(Sched::default());
        s.add(unit(0, &["a"], false));
        assert_eq!(s.next(0).unwrap().seq, 0);
        let waiter = {
            let s = s.clone();
            std::thread::spawn(move || s.next(1).is_none())
        };
        std::thread::sleep(std::time::Duration::from_millis(30));
        s.fail();
        assert!(waiter.join().unwrap());
    }
}

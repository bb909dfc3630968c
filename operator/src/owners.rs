//! The names of the cached batch Jobs and pods by the RenderJob they belong to, kept from the
//! same watch events as the caches, so that a reconcile reads its own render's objects instead
//! of walking every render's: with a hundred renders of a hundred batches at once, the walks
//! over 10,000 Jobs and 10,000 pods were most of each reconcile's work.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::runtime::watcher;
use parking_lot::Mutex;

use crate::crd::RenderJob;

type Names = HashMap<ObjectRef<RenderJob>, HashSet<String>>;

/// Object names by owning RenderJob. Like the cache it sits beside, a relist (`Init` …
/// `InitDone`) replaces what it holds, so objects deleted while the watch was down go too.
#[derive(Debug, Default)]
pub struct ByRender {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    names: Names,
    /// Filled during a relist; replaces `names` once it is done.
    relisting: Option<Names>,
}

impl ByRender {
    /// Takes in one watch event; `owner` names the RenderJob an object belongs to.
    pub fn observe<C: Lookup>(
        &self,
        event: &watcher::Event<C>,
        owner: fn(&C) -> Option<ObjectRef<RenderJob>>,
    ) {
        let mut inner = self.inner.lock();
        let named = |o: &C| Some((owner(o)?, o.name()?.into_owned()));
        match event {
            watcher::Event::Init => inner.relisting = Some(Names::new()),
            watcher::Event::InitApply(o) => {
                if let Some((render, name)) = named(o) {
                    let Inner { names, relisting } = &mut *inner;
                    if let Some(fresh) = relisting {
                        fresh
                            .entry(render.clone())
                            .or_default()
                            .insert(name.clone());
                    }
                    names.entry(render).or_default().insert(name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(fresh) = inner.relisting.take() {
                    inner.names = fresh;
                }
            }
            watcher::Event::Apply(o) => {
                if let Some((render, name)) = named(o) {
                    inner.names.entry(render).or_default().insert(name);
                }
            }
            watcher::Event::Delete(o) => {
                if let Some((render, name)) = named(o) {
                    let Inner { names, relisting } = &mut *inner;
                    for map in std::iter::once(names).chain(relisting.as_mut()) {
                        if let Some(set) = map.get_mut(&render) {
                            set.remove(&name);
                            if set.is_empty() {
                                map.remove(&render);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The render's objects that `store` holds. (A name the store does not hold yet or any
    /// more is skipped: the index sees each event just before the store does.)
    pub fn lookup<K>(&self, render: &ObjectRef<RenderJob>, store: &Store<K>) -> Vec<Arc<K>>
    where
        K: Lookup<DynamicType = ()> + Clone + 'static,
    {
        let names: Vec<String> = match self.inner.lock().names.get(render) {
            Some(set) => set.iter().cloned().collect(),
            None => return Vec::new(),
        };
        let ns = render.namespace.as_deref();
        names
            .iter()
            .filter_map(|name| {
                let key = ObjectRef::<K>::new(name);
                store.get(&match ns {
                    Some(ns) => key.within(ns),
                    None => key,
                })
            })
            .collect()
    }

    /// How many names it holds.
    pub fn len(&self) -> usize {
        self.inner.lock().names.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BatchJob;
    use k8s_openapi::api::batch::v1::Job;
    use kube::runtime::reflector;
    use serde_json::{Value, json};

    fn job(render: &str, index: u32) -> BatchJob {
        let mut v: Value =
            serde_json::from_str(include_str!("../examples/fixtures/job.json")).expect("json");
        v["metadata"]["name"] = json!(crate::job::job_name(render, index));
        v["metadata"]["namespace"] = json!("ns");
        v["metadata"]["ownerReferences"][0]["name"] = json!(render);
        serde_json::from_value::<Job>(v).expect("job").into()
    }

    fn owner(j: &BatchJob) -> Option<ObjectRef<RenderJob>> {
        Some(ObjectRef::new(&j.owner.as_ref()?.name).within(j.namespace.as_deref()?))
    }

    fn names(jobs: Vec<Arc<BatchJob>>) -> Vec<String> {
        let mut v: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_render_reads_only_its_own_objects_and_a_relist_forgets_the_gone() {
        let (store, mut writer) = reflector::store::<BatchJob>();
        let index = ByRender::default();
        let feed = |writer: &mut reflector::store::Writer<BatchJob>,
                    e: watcher::Event<BatchJob>| {
            index.observe(&e, owner);
            writer.apply_watcher_event(&e);
        };
        feed(&mut writer, watcher::Event::Init);
        for (render, i) in [("a", 0), ("a", 1), ("b", 0)] {
            feed(&mut writer, watcher::Event::InitApply(job(render, i)));
        }
        feed(&mut writer, watcher::Event::InitDone);
        let a = ObjectRef::<RenderJob>::new("a").within("ns");
        let b = ObjectRef::<RenderJob>::new("b").within("ns");
        assert_eq!(names(index.lookup(&a, &store)), ["a-0000", "a-0001"]);
        assert_eq!(names(index.lookup(&b, &store)), ["b-0000"]);
        assert!(
            index
                .lookup(&ObjectRef::new("a").within("other"), &store)
                .is_empty()
        );

        feed(&mut writer, watcher::Event::Apply(job("b", 1)));
        feed(&mut writer, watcher::Event::Delete(job("a", 0)));
        assert_eq!(names(index.lookup(&a, &store)), ["a-0001"]);
        assert_eq!(names(index.lookup(&b, &store)), ["b-0000", "b-0001"]);

        // The watch was down while b-0000 was deleted: the relist leaves it out.
        feed(&mut writer, watcher::Event::Init);
        // Until the relist is done, what was there is still read.
        assert_eq!(names(index.lookup(&b, &store)), ["b-0000", "b-0001"]);
        for (render, i) in [("a", 1), ("b", 1)] {
            feed(&mut writer, watcher::Event::InitApply(job(render, i)));
        }
        feed(&mut writer, watcher::Event::InitDone);
        assert_eq!(names(index.lookup(&b, &store)), ["b-0001"]);
        assert_eq!(index.len(), 2);

        // A name seen before the store has the object is skipped, not dropped.
        index.observe(&watcher::Event::Apply(job("a", 2)), owner);
        assert_eq!(names(index.lookup(&a, &store)), ["a-0001"]);
        writer.apply_watcher_event(&watcher::Event::Apply(job("a", 2)));
        assert_eq!(names(index.lookup(&a, &store)), ["a-0001", "a-0002"]);
    }
}

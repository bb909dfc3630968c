//! A RenderJob's batch Jobs and pods by batch index, as one reconcile sees them. Both are dense
//! tables over the plan's batches, filled in one pass without sorting or a map node per batch:
//! a reconcile builds them afresh for up to 10,000 batches each time it runs.

use crate::cache::{BatchJob, BatchPod};

/// The batch Jobs, by batch index (at most one per batch).
#[derive(Debug, Default, Clone)]
pub struct Jobs<'a> {
    slots: Vec<Option<(u32, &'a BatchJob)>>,
}

impl<'a> Jobs<'a> {
    /// `jobs` placed at their batch index; indexes at or past `batches` are left out.
    pub fn new(batches: u32, jobs: impl IntoIterator<Item = (u32, &'a BatchJob)>) -> Self {
        let mut table = Jobs {
            slots: vec![None; batches as usize],
        };
        for (i, job) in jobs {
            table.insert(i, job);
        }
        table
    }

    /// Put `job` at batch `i`, growing the table if needed.
    pub fn insert(&mut self, i: u32, job: &'a BatchJob) {
        let at = i as usize;
        if at >= self.slots.len() {
            self.slots.resize(at + 1, None);
        }
        self.slots[at] = Some((i, job));
    }

    pub fn get(&self, i: &u32) -> Option<&&'a BatchJob> {
        self.slots.get(*i as usize)?.as_ref().map(|(_, job)| job)
    }

    pub fn contains_key(&self, i: &u32) -> bool {
        self.get(i).is_some()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// `(index, Job)` in batch order.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &&'a BatchJob)> + '_ {
        self.slots.iter().flatten().map(|(i, job)| (i, job))
    }

    pub fn keys(&self) -> impl Iterator<Item = &u32> + '_ {
        self.iter().map(|(i, _)| i)
    }

    pub fn values(&self) -> impl Iterator<Item = &&'a BatchJob> + '_ {
        self.iter().map(|(_, job)| job)
    }

    /// The batch that batch `batch` was started ahead to follow (its Job's `renderfarm.io/after`),
    /// while that batch is `unfinished`: `batch` then waits, loaded, rather than renders.
    pub fn follows_unfinished(&self, batch: u32, unfinished: impl Fn(u32) -> bool) -> Option<u32> {
        self.get(&batch)
            .and_then(|j| j.after)
            .filter(|h| unfinished(*h))
    }
}

impl<'a> FromIterator<(u32, &'a BatchJob)> for Jobs<'a> {
    fn from_iter<I: IntoIterator<Item = (u32, &'a BatchJob)>>(iter: I) -> Self {
        Jobs::new(0, iter)
    }
}

/// The batches a status records as succeeded, as a table by batch index: a reconcile asks it of
/// every batch, and a set of thousands of entries built and dropped each pass cost more than the
/// rest of the pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recorded(Vec<bool>);

impl Recorded {
    /// From a status's `succeededBatches` ranges; indexes at or past `batches` are left out.
    pub fn decode(ranges: &str, batches: u32) -> Self {
        let mut table = vec![false; batches as usize];
        for (a, b) in crate::ranges::ranges(ranges) {
            let (a, b) = (a.min(batches), b.saturating_add(1).min(batches));
            table[a as usize..b as usize].fill(true);
        }
        Recorded(table)
    }

    pub fn contains(&self, index: &u32) -> bool {
        self.0.get(*index as usize).copied().unwrap_or(false)
    }
}

impl FromIterator<u32> for Recorded {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut table = Vec::new();
        for i in iter {
            let i = i as usize;
            if table.len() <= i {
                table.resize(i + 1, false);
            }
            table[i] = true;
        }
        Recorded(table)
    }
}

/// The batch pods, by batch index: one flat list in batch order and where each batch's run of
/// it starts (a counting sort).
#[derive(Debug, Clone)]
pub struct Pods<'a> {
    flat: Vec<&'a BatchPod>,
    /// `starts[i]..starts[i + 1]` is batch `i`'s run of `flat`.
    starts: Vec<u32>,
}

impl Default for Pods<'_> {
    fn default() -> Self {
        Pods {
            flat: Vec::new(),
            starts: vec![0],
        }
    }
}

impl<'a> Pods<'a> {
    /// `pods` grouped by batch index, each batch's in the order given; indexes at or past
    /// `batches` are left out.
    pub fn new(batches: u32, pods: &[(u32, &'a BatchPod)]) -> Self {
        let n = batches as usize;
        let mut starts = vec![0u32; n + 1];
        for (i, _) in pods.iter().filter(|(i, _)| (*i as usize) < n) {
            starts[*i as usize + 1] += 1;
        }
        for i in 0..n {
            starts[i + 1] += starts[i];
        }
        // Every slot is overwritten below; `any` only fills the list to its length.
        let Some(&(_, any)) = pods.first() else {
            return Pods {
                flat: Vec::new(),
                starts,
            };
        };
        let mut next = starts.clone();
        let mut flat = vec![any; starts[n] as usize];
        for (i, pod) in pods.iter().filter(|(i, _)| (*i as usize) < n) {
            let at = &mut next[*i as usize];
            flat[*at as usize] = pod;
            *at += 1;
        }
        Pods { flat, starts }
    }

    /// The pods of batch `i` (none for a batch without pods).
    pub fn of(&self, i: u32) -> &[&'a BatchPod] {
        let i = i as usize;
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(a), Some(b)) => &self.flat[*a as usize..*b as usize],
            _ => &[],
        }
    }

    /// Add `pods` to batch `i`, growing the table if needed.
    pub fn insert(&mut self, i: u32, pods: Vec<&'a BatchPod>) {
        let i = i as usize;
        let last = self.starts.last().copied().unwrap_or(0);
        if i + 1 >= self.starts.len() {
            self.starts.resize(i + 2, last);
        }
        let at = self.starts[i + 1] as usize;
        let added = pods.len() as u32;
        self.flat.splice(at..at, pods);
        for s in &mut self.starts[i + 1..] {
            *s += added;
        }
    }

    /// `(index, pods)` of the batches with pods, in batch order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[&'a BatchPod])> + '_ {
        self.starts
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] > w[0])
            .map(|(i, w)| (i as u32, &self.flat[w[0] as usize..w[1] as usize]))
    }

    /// Indexes of the batches with pods, in order.
    pub fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.iter().map(|(i, _)| i)
    }

    /// Every pod, in batch order.
    pub fn all(&self) -> &[&'a BatchPod] {
        &self.flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The table answers as the set the ranges decode to, inside the plan.
        #[test]
        fn recorded_is_the_decoded_set_within_the_plan(
            set in proptest::collection::btree_set(0u32..300, 0..80),
            batches in 0u32..320,
        ) {
            let text = crate::ranges::encode_ranges(&set);
            let table = Recorded::decode(&text, batches);
            for i in 0..330 {
                prop_assert_eq!(table.contains(&i), i < batches && set.contains(&i), "batch {}", i);
            }
        }
    }

    #[test]
    fn recorded_ignores_what_it_cannot_read() {
        let table = Recorded::decode("2-4, x, 9-7, 6,", 10);
        let got: Vec<u32> = (0..10).filter(|i| table.contains(i)).collect();
        assert_eq!(got, [2, 3, 4, 6]);
        assert!(!Recorded::decode("0-4000000000", 3).contains(&3));
    }

    fn pod(name: &str) -> BatchPod {
        let pod: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("pod");
        BatchPod::from(pod)
    }

    proptest! {
        /// The counting sort groups like a sort by index that keeps each batch's order.
        #[test]
        fn pods_group_like_a_stable_sort(indexes in prop::collection::vec(0u32..12, 0..40)) {
            let owned: Vec<BatchPod> = (0..indexes.len()).map(|k| pod(&k.to_string())).collect();
            let pairs: Vec<(u32, &BatchPod)> = indexes.iter().copied().zip(owned.iter()).collect();
            let table = Pods::new(10, &pairs);
            let mut want = pairs.clone();
            want.retain(|(i, _)| *i < 10);
            want.sort_by_key(|(i, _)| *i);
            let got: Vec<(u32, &str)> = table
                .iter()
                .flat_map(|(i, ps)| ps.iter().map(move |p| (i, p.name.as_str())))
                .collect();
            let want: Vec<(u32, &str)> = want.iter().map(|(i, p)| (*i, p.name.as_str())).collect();
            prop_assert_eq!(got, want);
            for i in 0..12 {
                let n = indexes.iter().filter(|x| **x == i && i < 10).count();
                prop_assert_eq!(table.of(i).len(), n);
            }
        }
    }

    #[test]
    fn inserted_pods_and_jobs_are_found() {
        let (a, b) = (pod("a"), pod("b"));
        let mut pods = Pods::default();
        pods.insert(3, vec![&a]);
        pods.insert(1, vec![&b]);
        assert_eq!(pods.keys().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(pods.of(3)[0].name, "a");
        assert!(pods.of(7).is_empty());

        let job: k8s_openapi::api::batch::v1::Job =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "j"}})).expect("job");
        let job = BatchJob::from(job);
        let mut jobs = Jobs::new(2, [(1, &job)]);
        jobs.insert(5, &job);
        jobs.insert(5, &job);
        assert_eq!(jobs.keys().copied().collect::<Vec<_>>(), [1, 5]);
        assert_eq!(jobs.len(), 2);
        assert!(jobs.contains_key(&1) && !jobs.contains_key(&0) && !jobs.contains_key(&9));
    }

    fn job(index: u32) -> BatchJob {
        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("shot-{index:04}"), "uid": format!("u{index}"),
                         "labels": {"renderfarm.io/batch": index.to_string()}},
            "spec": {"template": {}},
        }))
        .expect("job");
        job.into()
    }

    #[test]
    fn a_follower_follows_its_batch_only_while_that_batch_is_unfinished() {
        let head = job(0);
        let follower = BatchJob {
            after: Some(0),
            ..job(1)
        };
        let jobs = Jobs::from_iter([(0, &head), (1, &follower)]);
        assert_eq!(jobs.follows_unfinished(1, |i| i == 0), Some(0));
        assert_eq!(jobs.follows_unfinished(1, |_| false), None, "0 done");
        assert_eq!(jobs.follows_unfinished(0, |_| true), None, "0 follows none");
        assert_eq!(jobs.follows_unfinished(2, |_| true), None, "no Job for 2");
    }
}

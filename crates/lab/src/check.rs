//! The all-pairs reachability matrix of `calico-lab check`: every endpoint (node now, pods
//! later) probes every other one. The probe is injected, so the matrix logic and its rendering
//! are tested without namespaces; the real probe is one bounded `ping -c1 -W1` from inside the
//! source's namespace.

use std::process::{Command, Stdio};

use crate::lab::table;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    /// The namespace probes start from.
    pub netns: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub endpoints: Vec<Endpoint>,
    /// `results[i][j]`: did i reach j (`None` on the diagonal).
    pub results: Vec<Vec<Option<bool>>>,
}

impl Matrix {
    /// Probe all ordered pairs; one thread per source, its targets one after the other.
    pub fn probe<P>(endpoints: &[Endpoint], probe: P) -> Matrix
    where
        P: Fn(&str, &str) -> bool + Sync,
    {
        let probe = &probe;
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = endpoints
                .iter()
                .enumerate()
                .map(|(i, src)| {
                    s.spawn(move || {
                        endpoints
                            .iter()
                            .enumerate()
                            .map(|(j, dst)| (i != j).then(|| probe(&src.netns, &dst.address)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                // A panicking probe counts as failures, never as success.
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Some(false); endpoints.len()])
                })
                .collect()
        });
        Matrix {
            endpoints: endpoints.to_vec(),
            results,
        }
    }

    pub fn all_ok(&self) -> bool {
        self.results.iter().enumerate().all(|(i, row)| {
            row.iter()
                .enumerate()
                .all(|(j, r)| i == j || *r == Some(true))
        })
    }

    pub fn render(&self) -> String {
        let mut rows = vec![
            std::iter::once("FROM \\ TO".to_string())
                .chain(self.endpoints.iter().map(|e| e.name.clone()))
                .collect::<Vec<_>>(),
        ];
        for (i, e) in self.endpoints.iter().enumerate() {
            let mut row = vec![format!("{} ({})", e.name, e.address)];
            for j in 0..self.endpoints.len() {
                let cell = self
                    .results
                    .get(i)
                    .and_then(|r| r.get(j))
                    .copied()
                    .flatten();
                row.push(match cell {
                    None if i == j => "-".into(),
                    Some(true) => "ok".into(),
                    _ => "FAIL".into(),
                });
            }
            rows.push(row);
        }
        let mut out = table(&rows);
        out.push_str(if self.all_ok() {
            "all node pairs reach each other\n"
        } else {
            "some node pairs do NOT reach each other\n"
        });
        out
    }
}

/// One `ping -c1 -W1` from inside `netns` (at most ~1 s).
pub fn ping(netns: &str, dst: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-c1", "-W1", "-q", dst])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(n: &str, a: &str) -> Endpoint {
        Endpoint {
            name: n.into(),
            netns: format!("ns-{n}"),
            address: a.into(),
        }
    }

    #[test]
    fn every_ordered_pair_is_probed_once_and_failures_show() {
        let eps = [
            ep("a", "10.0.0.1"),
            ep("b", "10.0.0.2"),
            ep("c", "10.0.1.1"),
        ];
        let seen = std::sync::Mutex::new(Vec::new());
        let m = Matrix::probe(&eps, |ns, dst| {
            seen.lock().map(|mut v| v.push(format!("{ns}->{dst}"))).ok();
            !(ns == "ns-b" && dst == "10.0.1.1")
        });
        let mut seen = seen.into_inner().unwrap_or_default();
        seen.sort();
        assert_eq!(seen.len(), 6);
        assert!(!m.all_ok());
        assert_eq!(m.results[1][2], Some(false));
        assert_eq!(m.results[2][1], Some(true));
        let text = m.render();
        assert!(
            text.lines()
                .nth(2)
                .is_some_and(|l| l.starts_with("b (10.0.0.2)") && l.ends_with("FAIL")),
            "{text}"
        );
        assert_eq!(text.matches("FAIL").count(), 1, "{text}");
        assert!(text.contains("do NOT reach"), "{text}");
    }

    #[test]
    fn all_reachable() {
        let eps = [ep("a", "10.0.0.1"), ep("b", "10.0.0.2")];
        let m = Matrix::probe(&eps, |_, _| true);
        assert!(m.all_ok());
        assert!(m.render().contains("all node pairs reach each other"));
    }
}

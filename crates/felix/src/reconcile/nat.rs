//! natOutgoing: the `calico-nat` table rendered by [`crate::nat::nft_script`], applied with one
//! `nft -f -` per change (the script replaces the whole table atomically). A resync re-applies
//! it when the table is gone (deleted by hand) or was never applied by this process (a
//! restart: whatever an earlier run left is replaced).

use calico_dataplane::Nft;

use super::Report;
use crate::model::NatOutgoing;
use crate::nat::{NAT_TABLE, nft_script};

pub(crate) fn sync(
    nft: &mut dyn Nft,
    want: &NatOutgoing,
    applied: &mut Option<NatOutgoing>,
    check_kernel: bool,
    report: &mut Report,
) {
    let mut stale = applied.as_ref() != Some(want);
    if !stale && check_kernel {
        match nft.table_exists("ip", NAT_TABLE) {
            Ok(present) => stale = !present,
            Err(e) => {
                report.errors.push(e);
                return;
            }
        }
    }
    if !stale {
        return;
    }
    match nft.apply(&nft_script(want)) {
        Ok(()) => {
            *applied = Some(want.clone());
            report.nat_applied = true;
        }
        Err(e) => {
            *applied = None;
            report.errors.push(e);
        }
    }
}

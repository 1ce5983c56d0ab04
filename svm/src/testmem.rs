//! Fake physical memory for host tests: the `pagetable` crate's `FakeMem` (sparse 4 KiB frames
//! in a `HashMap`, with a frame allocator), also readable as guest memory for the walk tests.

use crate::addr::Gpa;
use crate::paging::GuestMemory;

pub use pagetable::testmem::FakeMem;

impl GuestMemory for FakeMem {
    fn read_u64(&self, gpa: Gpa) -> Option<u64> {
        self.peek(gpa.0)
    }
}

//! pgvector's `vector` type, built directly as the varlena pgvector's C code expects:
//!
//! ```c
//! typedef struct Vector { int32 vl_len_; int16 dim; int16 unused; float x[FLEXIBLE_ARRAY_MEMBER]; } Vector;
//! ```
//! Returning it (rather than real[]) means `ORDER BY v <-> uhok_embed($1)` needs no cast.

use std::cell::Cell;

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::prelude::*;
use pgrx::{pg_sys, IntoDatum};

/// pgvector's limit (VECTOR_MAX_DIM).
const VECTOR_MAX_DIM: usize = 16000;
const HEADER_BYTES: usize = 8;

pub struct Vector(pub Vec<f32>);

pgrx::impl_sql_translatable!(Vector, "vector");

impl IntoDatum for Vector {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        assert!(
            self.0.len() <= VECTOR_MAX_DIM,
            "vector dimension over pgvector's limit"
        );
        let size = HEADER_BYTES + 4 * self.0.len();
        // SAFETY: palloc0 returns `size` writable bytes in the current memory context; the header
        // layout is pgvector's Vector struct (4-byte varlena length, int16 dim, int16 unused).
        unsafe {
            let ptr = pg_sys::palloc0(size) as *mut u8;
            pgrx::set_varsize_4b(ptr as *mut pg_sys::varlena, size as i32);
            (ptr.add(4) as *mut i16).write(self.0.len() as i16);
            std::ptr::copy_nonoverlapping(
                self.0.as_ptr(),
                ptr.add(HEADER_BYTES) as *mut f32,
                self.0.len(),
            );
            Some(pg_sys::Datum::from(ptr))
        }
    }

    fn type_oid() -> pg_sys::Oid {
        vector_type_oid()
    }
}

unsafe impl BoxRet for Vector {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: the datum is a freshly palloc'd vector of the function's declared type.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

thread_local! {
    static VECTOR_OID: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// The OID of pgvector's `vector` type, found through the extension that owns it (so it works
/// whatever schema pgvector lives in and whatever the search_path is).
pub fn vector_type_oid() -> pg_sys::Oid {
    if let Some(oid) = VECTOR_OID.get() {
        return oid;
    }
    let oid = Spi::get_one::<pg_sys::Oid>(
        "SELECT t.oid FROM pg_catalog.pg_type t \
         JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e' \
         JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
         WHERE e.extname = 'vector' AND t.typname = 'vector'",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| error!("pgvector's vector type was not found"));
    VECTOR_OID.set(Some(oid));
    oid
}

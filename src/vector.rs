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

/// Forgets the cached OID whenever any type changes in the catalog: after `DROP EXTENSION
/// vector CASCADE; CREATE EXTENSION ...` in one session the old OID named a type that no longer
/// exists ("cache lookup failed for type N"). Type changes are rare; the next call looks it up
/// again (one catalog query).
unsafe extern "C-unwind" fn forget_vector_oid(_arg: pg_sys::Datum, _cache: i32, _hash: u32) {
    VECTOR_OID.set(None);
}

thread_local! {
    static INVALIDATION_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// The OID of pgvector's `vector` type, found through the extension that owns it (so it works
/// whatever schema pgvector lives in and whatever the search_path is).
pub fn vector_type_oid() -> pg_sys::Oid {
    if let Some(oid) = VECTOR_OID.get() {
        return oid;
    }
    if !INVALIDATION_REGISTERED.get() {
        // SAFETY: registers a callback that only clears a thread-local; backends never
        // unregister syscache callbacks, and this runs once per backend.
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                pg_sys::SysCacheIdentifier::TYPEOID as i32,
                Some(forget_vector_oid),
                pg_sys::Datum::from(0),
            );
        }
        INVALIDATION_REGISTERED.set(true);
    }
    let oid = Spi::get_one::<pg_sys::Oid>(
        // Every operator and type qualified: this runs under the caller's search_path, and an
        // unqualified `=` would run whatever a schema ahead of pg_catalog defines.
        "SELECT t.oid FROM pg_catalog.pg_type t \
         JOIN pg_catalog.pg_depend d ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass \
              AND d.objid OPERATOR(pg_catalog.=) t.oid AND d.deptype OPERATOR(pg_catalog.=) 'e'::pg_catalog.\"char\" \
         JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid \
         WHERE e.extname OPERATOR(pg_catalog.=) 'vector'::pg_catalog.name \
           AND t.typname OPERATOR(pg_catalog.=) 'vector'::pg_catalog.name",
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        pgrx::pg_sys::panic::ErrorReport::new(
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "pgvector's vector type was not found",
            "uhok_embed",
        )
        .set_hint("CREATE EXTENSION vector (uhok_embed requires it).")
        .report(pgrx::PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    });
    VECTOR_OID.set(Some(oid));
    oid
}

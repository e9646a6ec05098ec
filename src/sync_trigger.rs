//! The row-mode sync trigger (issue 24), in Rust: `BEFORE INSERT OR UPDATE OF <text>, <vector>
//! [, <version>] FOR EACH ROW`, which uhok_embed_attach() creates by default.
//!
//! It embeds the row's text and puts the vector (and the model's version) into the row before
//! PostgreSQL stores it, so the row is written once, complete, under the writing role's own
//! rights. That holds where the older statement-batch mode did not: a partition written directly
//! (row triggers are cloned to every partition, now and later; statement triggers of the parent
//! do not fire), a role that may INSERT but not UPDATE, row-level security that hides the row from
//! an UPDATE, RETURNING, other AFTER ROW triggers, and logical replication, which see the row as
//! it is written. Repeated texts are served by the query cache, as uhok_embed() is.
//!
//! The columns are the trigger's own column list (pg_trigger.tgattr: text, vector, version), not
//! names in its arguments: `ALTER TABLE ... RENAME COLUMN` does not change an attribute number,
//! PostgreSQL maps the list to each partition's own numbers when it clones the trigger, and a
//! column in the list cannot be dropped without dropping the trigger (CASCADE).
//!
//! With the argument 'batch' it is batch mode's row trigger: the same decisions, but a row that
//! needs a vector gets NULL (pending) for the statement's AFTER trigger to embed with the others.
//!
//! What it writes: the vector column stays uhok_embed(text) with the version beside it, except
//! - a row whose text is NULL gets a NULL vector (and the version, as 0.2.0's triggers did);
//! - an UPDATE that changes none of the three columns' values keeps the row, and runs no model
//!   (the trigger fires for an UPDATE naming any of them, so a vector set to NULL by hand, or
//!   a version marked stale, is embedded again);
//! - a vector the statement writes together with the loaded model's version is kept (a
//!   data-only restore, a copy between tables: no model time).

use std::ffi::CStr;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, PgLogLevel, PgSqlErrorCode, PgTupleDesc};

use crate::api;
use crate::vector::{vector_type_oid, Vector};

#[pg_trigger(sql = r#"
CREATE FUNCTION uhok_embed_internal.uhok_embed_row_embed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'uhok_embed_row_embed_wrapper';
COMMENT ON FUNCTION uhok_embed_internal.uhok_embed_row_embed() IS
'uhok_embed_attach()''s row trigger (src/sync_trigger.rs): BEFORE INSERT OR UPDATE OF <text>, <vector> [, <version>] FOR EACH ROW, the columns taken from that list; with the argument ''batch'' it marks rows pending for batch mode''s statement trigger.';
"#)]
fn uhok_embed_row_embed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    let fired_right = pgrx::trigger_support::trigger_fired_before(event)
        && pgrx::trigger_support::trigger_fired_for_row(event)
        && (pgrx::trigger_support::trigger_fired_by_insert(event)
            || pgrx::trigger_support::trigger_fired_by_update(event));
    let t = trigger.trigger();
    // SAFETY: tgattr holds tgnattr attribute numbers (PostgreSQL's Trigger struct).
    let columns: &[i16] = if t.tgnattr > 0 && !t.tgattr.is_null() {
        unsafe { std::slice::from_raw_parts(t.tgattr, t.tgnattr as usize) }
    } else {
        &[]
    };
    if !fired_right || !(2..=3).contains(&columns.len()) {
        raise(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "uhok_embed_row_embed() must be fired BEFORE INSERT OR UPDATE OF <text>, <vector> [, <version>] FOR EACH ROW".into(),
            "Let uhok_embed_attach() create the trigger.",
        );
    }
    let is_update = pgrx::trigger_support::trigger_fired_by_update(event);
    // SAFETY: a row trigger's relation and tuples are valid for the call.
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let new_tuple = if is_update {
        data.tg_newtuple
    } else {
        data.tg_trigtuple
    };
    let table = || trigger.table_name().unwrap_or_default();
    let (text_col, vector_col, version_col) = (columns[0], columns[1], columns.get(2).copied());
    // (PostgreSQL refuses ALTER COLUMN ... TYPE on a trigger's columns; checked all the same, as
    // the datums read and written below must be of the columns' types.)
    let text_att = attribute(tupdesc, text_col, &table);
    require_type(
        text_att,
        &[pg_sys::TEXTOID, pg_sys::VARCHAROID, pg_sys::BPCHAROID],
        "a text type",
        &table,
    );
    let vector_att = attribute(tupdesc, vector_col, &table);
    require_type(
        vector_att,
        &[vector_type_oid()],
        "pgvector's type vector",
        &table,
    );
    let version = version_col.map(|col| (col, attribute(tupdesc, col, &table)));
    if let Some((_, att)) = version {
        require_type(
            att,
            &[pg_sys::TEXTOID, pg_sys::VARCHAROID],
            "type text or varchar",
            &table,
        );
    }

    let text = read_text(new_tuple, tupdesc, text_col);
    // The loaded model's version, looked up once per row (it is compared and written).
    let current_version = std::cell::OnceCell::new();
    let current_version = || {
        current_version
            .get_or_init(api::uhok_embed_version)
            .as_str()
    };
    // A vector this statement wrote together with the loaded model's version is kept: a
    // data-only restore or a copy between tables costs no model time.
    let supplied_current = || {
        version.is_some_and(|(col, _)| {
            !is_null(new_tuple, tupdesc, vector_col)
                && read_text(new_tuple, tupdesc, col).as_deref() == Some(current_version())
        })
    };
    // Batch mode's row trigger (argument 'batch') leaves the vector pending (NULL): the
    // statement's AFTER trigger embeds all pending rows together (sql/sync.sql).
    let pending = trigger.extra_args()?.first().is_some_and(|a| a == "batch");
    if is_update {
        let old_tuple = data.tg_trigtuple;
        let vector_same = same(old_tuple, new_tuple, tupdesc, vector_col, vector_att);
        let version_same =
            version.is_none_or(|(col, att)| same(old_tuple, new_tuple, tupdesc, col, att));
        let text_same = read_text(old_tuple, tupdesc, text_col) == text;
        if text_same && vector_same && version_same {
            // Nothing of ours changed: keep the vector, run no model.
            return Ok(Some(unchanged(tupdesc, new_tuple)));
        }
        if !vector_same && supplied_current() {
            return Ok(Some(unchanged(tupdesc, new_tuple)));
        }
        // Batch mode's own fill, on a table without a version column (with one, the fill
        // writes the current version and is kept just above): the statement trigger, one
        // trigger level up, writes the vector of a pending row whose text it embedded. Marked
        // pending again, the row would fire the statement trigger again, and again, until
        // "stack depth limit exceeded" failed every INSERT.
        if pending
            && version.is_none()
            && text.is_some()
            && text_same
            && is_null(old_tuple, tupdesc, vector_col)
            && !is_null(new_tuple, tupdesc, vector_col)
            && trigger_depth() > 1
        {
            return Ok(Some(unchanged(tupdesc, new_tuple)));
        }
    } else if supplied_current() {
        return Ok(Some(unchanged(tupdesc, new_tuple)));
    }

    let vector = text.filter(|_| !pending).map(|text| {
        let v = api::embed_as(crate::stats::Function::Trigger, &text, true);
        let typmod = vector_att.atttypmod;
        if typmod > 0 && typmod as usize != v.0.len() {
            raise(
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("expected {typmod} dimensions, not {}", v.0.len()),
                "The model gives vectors of another size than the column's: use a vector column of the model's size (uhok_embed_info()->>'dim'), or another model.",
            );
        }
        v
    });
    let mut cols = vec![i32::from(vector_col)];
    let mut nulls = vec![vector.is_none()];
    let mut values = vec![vector
        .and_then(Vector::into_datum)
        .unwrap_or(pg_sys::Datum::from(0))];
    if let Some((col, att)) = version {
        let current = current_version();
        // varchar(n): the same check an assignment makes.
        if att.atttypmod > pg_sys::VARHDRSZ as i32
            && current.chars().count() > (att.atttypmod - pg_sys::VARHDRSZ as i32) as usize
        {
            raise(
                PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
                format!(
                    "value too long for type character varying({})",
                    att.atttypmod - pg_sys::VARHDRSZ as i32
                ),
                "The version column needs room for the model's version (uhok_embed_version()): use text.",
            );
        }
        cols.push(i32::from(col));
        nulls.push(false);
        values.push(current.into_datum().expect("a string is never NULL"));
    }
    // SAFETY: the replaced columns exist (checked above) and their datums are of their types; the
    // new tuple is palloc'd in the trigger's memory context, as PostgreSQL expects.
    let modified = unsafe {
        pg_sys::heap_modify_tuple_by_cols(
            new_tuple,
            tupdesc,
            cols.len() as i32,
            cols.as_mut_ptr(),
            values.as_mut_ptr(),
            nulls.as_mut_ptr(),
        )
    };
    Ok(Some(unchanged(tupdesc, modified)))
}

/// `tuple` handed back to PostgreSQL as the row to store.
fn unchanged<'a>(
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
) -> PgHeapTuple<'a, AllocatedByPostgres> {
    // SAFETY: a valid tuple of the trigger's relation, of its descriptor, which PostgreSQL owns.
    unsafe { PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked(tupdesc), tuple) }
}

/// Whether column `attnum` (attribute `att`) has the same value (bytes) in both tuples, NULL
/// included.
fn same(
    old: pg_sys::HeapTuple,
    new: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    attnum: i16,
    att: &pg_sys::FormData_pg_attribute,
) -> bool {
    let (mut old_null, mut new_null) = (false, false);
    // SAFETY: valid tuples of this descriptor; attnum was checked; a detoasted copy lives in the
    // trigger's memory context.
    unsafe {
        let a = pg_sys::heap_getattr(old, i32::from(attnum), tupdesc, &mut old_null);
        let b = pg_sys::heap_getattr(new, i32::from(attnum), tupdesc, &mut new_null);
        match (old_null, new_null) {
            (true, true) => true,
            // The three columns are varlenas (text, varchar, char, vector): their bytes, detoasted.
            (false, false) if att.attlen == -1 => {
                let bytes = |d: pg_sys::Datum| {
                    let v = pg_sys::pg_detoast_datum_packed(d.cast_mut_ptr());
                    pgrx::varlena::varlena_to_byte_slice(v)
                };
                bytes(a) == bytes(b)
            }
            (false, false) => a == b,
            _ => false,
        }
    }
}

/// An ERROR unless attribute `att` is of one of `types` (`what` names them for the message).
fn require_type(
    att: &pg_sys::FormData_pg_attribute,
    types: &[pg_sys::Oid],
    what: &str,
    table: &dyn Fn() -> String,
) {
    if !types.contains(&att.atttypid) {
        raise(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "column \"{}\" of relation \"{}\" is no longer of {what}",
                name(att),
                table()
            ),
            &format!("uhok_embed_detach() and uhok_embed_attach() again with a column of {what}."),
        );
    }
}

/// Attribute `attnum` of the relation, or an ERROR if it is gone.
fn attribute<'d>(
    tupdesc: pg_sys::TupleDesc,
    attnum: i16,
    table: &dyn Fn() -> String,
) -> &'d pg_sys::FormData_pg_attribute {
    // SAFETY: natts attributes follow the descriptor (PostgreSQL's TupleDescAttr): up to 17 as
    // its attrs array; from 18 after its natts CompactAttributes.
    let att = unsafe {
        let natts = (*tupdesc).natts;
        #[cfg(not(feature = "pg18"))]
        let attrs = (*tupdesc).attrs.as_ptr();
        #[cfg(feature = "pg18")]
        let attrs = (*tupdesc)
            .compact_attrs
            .as_ptr()
            .add(natts as usize)
            .cast::<pg_sys::FormData_pg_attribute>();
        (attnum >= 1 && i32::from(attnum) <= natts).then(|| &*attrs.add(attnum as usize - 1))
    };
    match att {
        Some(att) if !att.attisdropped => att,
        _ => raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("a column uhok_embed keeps in sync on relation \"{}\" was dropped", table()),
            "uhok_embed_detach() the vector column (or drop its trigger), then uhok_embed_attach() again.",
        ),
    }
}

fn name(att: &pg_sys::FormData_pg_attribute) -> String {
    // SAFETY: attname is a NUL-terminated NameData.
    unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

fn is_null(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, attnum: i16) -> bool {
    // SAFETY: a valid tuple of this descriptor; attnum was checked.
    unsafe { pg_sys::heap_attisnull(tuple, i32::from(attnum), tupdesc) }
}

/// A text, varchar or char column's value (the types uhok_embed_attach accepts for it).
fn read_text(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, attnum: i16) -> Option<String> {
    let mut isnull = false;
    // SAFETY: a valid tuple of this descriptor; attnum was checked; the three types share
    // text's representation, which String::from_polymorphic_datum reads.
    unsafe {
        let datum = pg_sys::heap_getattr(tuple, i32::from(attnum), tupdesc, &mut isnull);
        String::from_polymorphic_datum(datum, isnull, pg_sys::TEXTOID)
    }
}

/// PostgreSQL's pg_trigger_depth(): 1 in a trigger fired by a statement of the client, 2 in
/// one fired by a statement that a trigger ran.
fn trigger_depth() -> i32 {
    // SAFETY: pg_trigger_depth takes no arguments and only reads a backend-local counter.
    unsafe { pgrx::direct_function_call::<i32>(pg_sys::pg_trigger_depth, &[]) }.unwrap_or(0)
}

fn raise(code: PgSqlErrorCode, message: String, hint: &str) -> ! {
    ErrorReport::new(code, message, "uhok_embed")
        .set_hint(hint)
        .report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

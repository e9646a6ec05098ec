-- uhok_embed.precision: the opt-in bf16 forward pass, approximate and marked as such.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/multilingual-e5-small-fixture';
SET uhok_embed.cache_size = 0;
SELECT uhok_embed_info()->>'precision' AS precision, uhok_embed_info()->>'backend' AS backend;
SHOW uhok_embed.precision;
CREATE TEMP TABLE fp32 AS
SELECT t, uhok_embed(t) AS v, uhok_embed_version() AS version
FROM (VALUES ('갈비탕'), ('김치찌개'), ('매콤한 닭볶음탕 황금레시피'), ('')) AS x(t);

SET uhok_embed.precision = 'bf16';
SELECT uhok_embed_info()->>'precision' AS precision, uhok_embed_info()->>'backend' AS backend;
-- Rows embedded in bf16 carry their own version, so backfill can find them after a switch back.
SELECT DISTINCT uhok_embed_version() = version || '+bf16' AS version_marked FROM fp32;
-- Close to fp32 (cosine >= 0.9999 on the test models), but not equal.
SELECT t, 1 - (uhok_embed(t) <=> v) >= 0.9999 AS close, uhok_embed(t) <> v AS differs,
       vector_dims(uhok_embed(t)) AS dims
FROM fp32;

-- Back to fp32: the exact vectors again.
SET uhok_embed.precision = fp32;
SELECT bool_and(uhok_embed(t) = v) AS exact_again, bool_and(uhok_embed_version() = version) AS same_version
FROM fp32;

-- Bad values and non-superusers are refused.
SET uhok_embed.precision = 'fp16';
CREATE ROLE uhok_embed_precision_user;
SET ROLE uhok_embed_precision_user;
SET uhok_embed.precision = 'bf16';
RESET ROLE;
DROP ROLE uhok_embed_precision_user;

-- uhok_embed with the exact all-MiniLM-L6-v2 and the multilingual stand-in.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
SELECT vector_dims(uhok_embed('chocolate cake')) AS dims;
SELECT abs(vector_norm(uhok_embed('chocolate cake')) - 1) < 1e-6 AS unit_norm;
SELECT abs(vector_norm(uhok_embed('chocolate cake', true)) - 1) < 1e-6 AS unit_norm_explicit;
-- normalize => false: the mean-pooled vector before normalisation. NORMALIZE is an SQL
-- keyword, so a named argument needs quotes.
SELECT round(vector_norm(uhok_embed('chocolate cake', "normalize" => false))::numeric, 3) AS raw_norm;
SELECT round((uhok_embed('chocolate cake', false) <=> uhok_embed('chocolate cake'))::numeric, 6)
       AS cosine_distance_raw_vs_normalized;
-- NULL in, NULL out.
SELECT uhok_embed(NULL) IS NULL AS null_in_null_out;
SELECT uhok_embed(NULL, false) IS NULL AS null_in_null_out_raw;
-- Leading and trailing whitespace is stripped, as sentence-transformers does.
SELECT uhok_embed('  chocolate cake  ') = uhok_embed('chocolate cake') AS stripped;
-- The empty string is a valid input (only [CLS] [SEP]).
SELECT vector_dims(uhok_embed('')) AS empty_dims;
-- Inputs far longer than max_seq_length are truncated, not rejected.
SELECT vector_dims(uhok_embed(repeat('beef short rib soup ', 2000))) AS long_dims;
-- Same input, same vector, within a session.
SELECT uhok_embed('비빔밥') = uhok_embed('비빔밥') AS deterministic;

-- The multilingual model: Korean works.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/multilingual-e5-small-fixture';
SELECT vector_dims(uhok_embed('갈비탕')) AS dims;
SELECT (uhok_embed('갈비탕') <-> uhok_embed('소갈비탕'))
     < (uhok_embed('갈비탕') <-> uhok_embed('chocolate cake')) AS galbitang_nearer_sogalbitang;
SELECT t, round((uhok_embed('갈비탕') <=> uhok_embed(t))::numeric, 2) AS cosine_distance
FROM unnest(ARRAY['소갈비탕', '갈비찜', '비빔밥', 'chocolate cake']) AS t
ORDER BY uhok_embed('갈비탕') <=> uhok_embed(t);

-- uhok_embed_batch: one forward pass per uhok_embed.batch_size texts, results in input
-- order, NULL elements give NULL elements, each equal to uhok_embed of its element.
SET uhok_embed.model_path = '$sharedir/uhok_embed/models/all-MiniLM-L6-v2';
CREATE TEMP TABLE inputs AS
SELECT * FROM unnest(ARRAY['chocolate cake', NULL, '갈비탕', '', 'beef short rib soup with radish, garlic and green onions',
                           'chocolate cake', '   spicy noodles  ']) WITH ORDINALITY AS x(t, i);
SELECT x.i, x.t, v IS NULL AS is_null, vector_dims(v) AS dims,
       max_abs_diff(v, uhok_embed(x.t)) <= 1e-5
           AS equals_uhok_embed
FROM unnest(uhok_embed_batch(ARRAY(SELECT t FROM inputs ORDER BY i))) WITH ORDINALITY AS u(v, i)
JOIN inputs x USING (i) ORDER BY i;
-- normalize => false, as for uhok_embed.
SELECT max_abs_diff((uhok_embed_batch(ARRAY['chocolate cake'], false))[1], uhok_embed('chocolate cake', false)) <= 1e-5
       AS unnormalized_equal;
-- Empty in, empty out; NULL array in, NULL out.
SELECT uhok_embed_batch('{}') AS empty, uhok_embed_batch(NULL) IS NULL AS null_array;
-- A vector[] is pgvector's own array type.
SELECT pg_typeof(uhok_embed_batch(ARRAY['a']));

-- Chunks of uhok_embed.batch_size: 100 texts at 32 per pass are 4 forward passes, not 100.
SELECT (uhok_embed_info()->>'forward_passes')::int AS passes_before \gset
SELECT array_length(uhok_embed_batch(ARRAY(SELECT 'recipe number ' || g FROM generate_series(1, 100) g)), 1);
SELECT (uhok_embed_info()->>'forward_passes')::int - :passes_before AS forward_passes;
SET uhok_embed.batch_size = 7;
SELECT (uhok_embed_info()->>'forward_passes')::int AS passes_before \gset
SELECT array_length(uhok_embed_batch(ARRAY(SELECT 'recipe number ' || g FROM generate_series(1, 100) g)), 1);
SELECT (uhok_embed_info()->>'forward_passes')::int - :passes_before AS forward_passes;
RESET uhok_embed.batch_size;
SET uhok_embed.batch_size = 0;
-- Every text of a big mixed batch equals the same text embedded alone.
SELECT count(*) AS texts,
       bool_and(max_abs_diff(v, uhok_embed(t)) <= 1e-5) AS all_equal
FROM (SELECT unnest(uhok_embed_batch(array_agg(t ORDER BY g))) AS v, unnest(array_agg(t ORDER BY g)) AS t
      FROM (SELECT g, repeat('spicy pork ', g % 13) || 'recipe ' || g AS t FROM generate_series(1, 150) g) s) b;

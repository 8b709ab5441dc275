# Runs a small sweep and draws it; fails unless both figures exist and are non-trivial.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${TQBENCH} run ${SRC}/tests/specs/good/plot.yaml -o ${WORK}/plot.h5
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tqbench run failed: ${rc}")
endif()
execute_process(COMMAND ${PYTHON} ${SRC}/plots/plot.py ${WORK}/plot.h5 -o ${WORK}/plot RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "plot.py failed: ${rc}")
endif()
foreach(ext png pdf)
  file(SIZE ${WORK}/plot.${ext} size)
  if(size LESS 5000)
    message(FATAL_ERROR "plot.${ext} is only ${size} bytes")
  endif()
endforeach()
# The scatter form with placed labels and a zoom, as the docs' figures use it.
execute_process(COMMAND ${PYTHON} ${SRC}/plots/plot.py ${WORK}/plot.h5 -o ${WORK}/scatter --scatter --xlim 0,20 --ylim 1e-4,1
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT EXISTS ${WORK}/scatter.png)
  message(FATAL_ERROR "plot.py --scatter failed: ${rc}")
endif()
execute_process(COMMAND ${PYTHON} ${SRC}/plots/plot.py ${WORK}/plot.h5 --metric no_such_metric
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "no column 'no_such_metric'")
  message(FATAL_ERROR "plot.py accepted an unknown metric: ${rc} ${err}")
endif()

# `tqbench plot` (the prepared interpreter; TQB_PYTHON points it at the one configured) with the defaults for
# a matrix sweep, then for a model sweep (delta_ppl against quantized bits, baseline as a reference line), two
# result files in one figure, and --where with the comparison operators.
set(ENV{TQB_PYTHON} ${PYTHON})
execute_process(COMMAND ${TQBENCH} plot ${WORK}/plot.h5 -o ${WORK}/via-tqbench RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT EXISTS ${WORK}/via-tqbench.png OR NOT EXISTS ${WORK}/via-tqbench.pdf)
  message(FATAL_ERROR "tqbench plot (matrix sweep defaults) failed: ${rc}")
endif()
set(BOOKS ${SRC}/../shared/models/books-14m)
set(HELDOUT ${SRC}/../shared/data/books-heldout/heldout.txt)
if(EXISTS ${BOOKS}/config.json AND EXISTS ${HELDOUT})
  foreach(ctx 64 128)
    file(WRITE ${WORK}/model${ctx}.yaml "experiment: model${ctx}\ndata: {source: model, model: '${BOOKS}', corpus: '${HELDOUT}', ctx: ${ctx}, chunks: 3}\n"
         "quantizers: [none, 'rtn(bits=3,group=64)', 'rtn(bits=4,group=64)', 'turboquant(bits=3,group=64)', q4_K]\n"
         "metrics: [perplexity, delta_ppl, kld_mean, quantized_bits_per_weight]\n")
    execute_process(COMMAND ${TQBENCH} run ${WORK}/model${ctx}.yaml -o ${WORK}/model${ctx}.h5 RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "tqbench run (model sweep, ctx ${ctx}) failed: ${rc}")
    endif()
  endforeach()
  execute_process(COMMAND ${TQBENCH} plot ${WORK}/model64.h5 -o ${WORK}/model RESULT_VARIABLE rc)
  execute_process(COMMAND ${TQBENCH} plot ${WORK}/model64.h5 ${WORK}/model128.h5 -o ${WORK}/two --metric kld_mean
                          --where "family!=rtn" --where "quantized_bits_per_weight<5" RESULT_VARIABLE rc2)
  foreach(f model.png model.pdf two.png two.pdf)
    if(NOT EXISTS ${WORK}/${f})
      message(FATAL_ERROR "tqbench plot on model sweeps did not write ${f}: ${rc} ${rc2}")
    endif()
    file(SIZE ${WORK}/${f} size)
    if(size LESS 5000)
      message(FATAL_ERROR "${f} is only ${size} bytes")
    endif()
  endforeach()
  execute_process(COMMAND ${TQBENCH} plot ${WORK}/model64.h5 --where "q.bits>>3" RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "numeric column")
    message(FATAL_ERROR "plot --where accepted a bad condition: ${rc} ${err}")
  endif()
else()
  message(STATUS "books-14m (../shared) is not there: the model-sweep plot defaults are not drawn")
endif()

# The paper figure and table from a small distortion run.
execute_process(COMMAND ${TQBENCH} run ${SRC}/tests/specs/good/distortion-small.yaml -o ${WORK}/dist.h5
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "tqbench run (distortion) failed: ${rc}")
endif()
execute_process(COMMAND ${PYTHON} ${SRC}/plots/distortion.py ${WORK}/dist.h5 -o ${WORK}/dist --d 128
                RESULT_VARIABLE rc OUTPUT_VARIABLE table)
if(NOT rc EQUAL 0 OR NOT table MATCHES "\\| 1 \\| 0\\.3")
  message(FATAL_ERROR "distortion.py failed or its table lacks the b = 1 row: ${rc}\n${table}")
endif()
foreach(f dist.png dist.pdf dist-table.md)
  if(NOT EXISTS ${WORK}/${f})
    message(FATAL_ERROR "distortion.py did not write ${f}")
  endif()
endforeach()
execute_process(COMMAND ${PYTHON} ${SRC}/plots/distortion.py ${WORK}/plot.h5 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "not a distortion run")
  message(FATAL_ERROR "distortion.py accepted a file without distortion metrics: ${rc} ${err}")
endif()
execute_process(COMMAND ${PYTHON} ${SRC}/plots/distortion.py ${WORK}/dist.h5 --d 999 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "no points at d = 999")
  message(FATAL_ERROR "distortion.py accepted a dimension without points: ${rc} ${err}")
endif()

# bench/kernel_table.py: the ratio table from a (small, hand-written) Google Benchmark JSON file, and a
# clear error for a file that is not one.
file(WRITE ${WORK}/k.json [=[{"context": {"host_name": "h", "num_cpus": 2, "mhz_per_cpu": 2445, "date": "d"},
 "benchmarks": [
  {"name": "BM_Dense/64/128/1/real_time", "run_type": "iteration", "real_time": 8.0, "time_unit": "us", "label": "dense_fp32"},
  {"name": "BM_Fused/tq4/64/128/1/real_time", "run_type": "iteration", "real_time": 2.0, "time_unit": "us", "x_dense": 3.9, "label": "fused_i16_avx2"}]}]=])
execute_process(COMMAND ${PYTHON} ${SRC}/bench/kernel_table.py ${WORK}/k.json RESULT_VARIABLE rc OUTPUT_VARIABLE table)
if(NOT rc EQUAL 0 OR NOT table MATCHES "64 × 128, n = 1 \\| 8 µs \\| 2 µs \\(4.00×\\)")
  message(FATAL_ERROR "kernel_table.py: ${rc}\n${table}")
endif()
file(WRITE ${WORK}/bad.json "not json")
execute_process(COMMAND ${PYTHON} ${SRC}/bench/kernel_table.py ${WORK}/bad.json RESULT_VARIABLE rc ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "cannot read benchmark JSON")
  message(FATAL_ERROR "kernel_table.py accepted a file that is not JSON: ${rc} ${err}")
endif()

// Names that fit (harness/short_names.hpp, issue 27): the family and only the parameters that vary.
#include <doctest/doctest.h>

#include "harness/short_names.hpp"

using namespace tqb;

TEST_CASE("varying_names keeps the family and the parameters whose values differ within it") {
  const std::vector<std::string> names{
      "turboquant(bits=2,codebook=beta,rotation=haar,group=32,norm=fp32)",
      "turboquant(bits=3,codebook=beta,rotation=haar,group=32,norm=fp32)",
      "turboquant(bits=3,codebook=beta,rotation=haar,group=64,norm=fp32)",
      "rtn(bits=4,group=128,mode=sym,scale=fp16)",
      "rotated(quantizer=rtn(bits=4,group=128,mode=sym,scale=fp16),rotation=hadamard)",
      "rotated(quantizer=rtn(bits=3,group=128,mode=sym,scale=fp16),rotation=hadamard)",
      "none()",
      "q4_K(fallback=q5_0)",
      "not a name",
  };
  const std::vector<std::string> expect{
      "turboquant(bits=2,group=32)",
      "turboquant(bits=3,group=32)",
      "turboquant(bits=3,group=64)",
      "rtn",
      "rotated(quantizer=rtn(bits=4,group=128,mode=sym,scale=fp16))",  // a nested name is one value
      "rotated(quantizer=rtn(bits=3,group=128,mode=sym,scale=fp16))",
      "none",
      "q4_K",
      "not a name",
  };
  CHECK(varying_names(names) == expect);
  // A key only some names of a family have counts as varying.
  CHECK(varying_names({"model(model=a,ctx=512)", "model(model=a,ctx=512,device=cuda)"}) ==
        std::vector<std::string>{"model", "model(device=cuda)"});
  CHECK(varying_names({}).empty());
}

// The Jinja interpreter construct by construct. Expected outputs come from Python jinja2 3.1 in
// Hugging Face's chat template environment (ImmutableSandboxedEnvironment, trim_blocks,
// lstrip_blocks, loopcontrols, HF's tojson); errors are checked for their message and position.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"
#include "tokenizer/jinja_value.h"

namespace ferrum::jinja {
namespace {

using ojson = nlohmann::ordered_json;

Result<std::string> render(const std::string& tmpl, const ojson& ctx = ojson::object()) {
  FERRUM_ASSIGN_OR_RETURN(Template t, Template::parse(tmpl));
  return t.render(ctx);
}

// The error message of parsing and rendering `tmpl`, or "" if it renders.
std::string error_of(const std::string& tmpl, const ojson& ctx = ojson::object()) {
  auto r = render(tmpl, ctx);
  return r.ok() ? "" : r.status().message();
}

struct Case {
  const char* name;
  const char* tmpl;
  const char* context;  // JSON object
  const char* expected;
};

// Outputs of jinja2.
const Case kCases[] = {
    {"text", "hello {{ name }}!", "{\"name\": \"world\"}", "hello world!"},
    {"trim_blocks", "{% if true %}\nyes\n{% endif %}\nend", "{}", "yes\nend"},
    {"lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", "{}", "a\n    b\nc"},
    {"lstrip_not_vars", "a\n    {{ 'x' }}\n", "{}", "a\n    x"},
    {"dash_control", "a   {%- if true -%}   b   {%- endif -%}   c", "{}", "abc"},
    {"var_dash", "a \n {{- 'b' -}} \n c", "{}", "abc"},
    {"plus_control", "a\n    {%+ if true %}b{% endif +%}\nc", "{}", "a\n    b\nc"},
    {"comment", "a {# note #} b\n  {# own line #}\nc", "{}", "a  b\nc"},
    {"raw", "{% raw %}{{ not evaluated }}{% endraw %}", "{}", "{{ not evaluated }}"},
    {"trailing_newline", "x\n", "{}", "x"},
    {"crlf", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", "{}", "a\nb\n"},
    {"string_escapes", "{{ 'a\\tb\\n' ~ \"q\\\"\" ~ '\\x41\\u00e9\\101' ~ '\\q' }}", "{}", "a\tb\nq\"AéA\\q"},
    {"literals",
     "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 1e3 }} {{ 0x1F }} {{ 1_000 }} {{ true }} {{ False }} {{ none }} {{ [1, "
     "'a', none, true] }} {{ {'k': 'v', 'n': [1]} }} {{ (1,) }}",
     "{}", "1 -2 1.5 1000.0 31 1000 True False None [1, 'a', None, True] {'k': 'v', 'n': [1]} (1,)"},
    {"float_repr",
     "{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-5 }} {{ 0.0001 }} {{ 2.0 }} {{ -0.0 }} {{ 1/3 }}", "{}",
     "0.30000000000000004 1e+16 1000000000000000.0 1e-05 0.0001 2.0 -0.0 0.3333333333333333"},
    {"arith",
     "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 ** 3 ** 2 }} {{ 1 + 2 * 3 - 4 "
     "}} {{ 'ab' * 2 }} {{ [1] + [2] }} {{ 'x' ~ 1 ~ none }}",
     "{}", "3 -4 -2 3.5 1024 64 3 abab [1, 2] x1None"},
    {"compare",
     "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ [1,2] == [1,2] }} {{ 'b' > 'a' }} "
     "{{ true == 1 }}",
     "{}", "True False True True True True True"},
    {"in",
     "{{ 'ell' in 'hello' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1] }} {{ 'x' in "
     "undefined_var }}",
     "{}", "True True True True False"},
    {"logic", "{{ none or 'dflt' }} {{ 'a' and 'b' }} {{ 0 and 1 }} {{ not [] }} {{ not 'x' }}", "{}",
     "dflt b 0 True False"},
    {"cond_expr", "{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }} [{{ 'y' if 0 }}]", "{}", "y n []"},
    {"attr_item",
     "{{ m.role }} {{ m['content'] }} {{ m.missing }}|{{ l[0] }} {{ l[-1] }} {{ l.0 }} {{ l[5] }}|{{ s[1] }} "
     "{{ s[-1] }}",
     "{\"m\": {\"role\": \"user\", \"content\": \"hi\"}, \"l\": [1, 2, 3], \"s\": \"héllo\"}",
     "user hi |1 3 1 |é o"},
    {"slices",
     "{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ s[::-1] }} {{ s[1:3] }} {{ l[5:] }} {{ l[-10:2] "
     "}}",
     "{\"l\": [1, 2, 3, 4], \"s\": \"héllo\"}", "[2, 3, 4] [1, 2, 3] [4, 3, 2, 1] [1, 3] olléh él [] [1, 2]"},
    {"for_loop",
     "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.length }}/{{ "
     "loop.first }}/{{ loop.last }}:{{ x }} {% endfor %}",
     "{\"xs\": [\"a\", \"b\", \"c\"]}", "1/0/3/3/True/False:a 2/1/2/3/False/False:b 3/2/1/3/False/True:c "},
    {"for_prev_next", "{% for x in xs %}[{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}]{% endfor %}",
     "{\"xs\": [1, 2, 3]}", "[<1>2][1<2>3][2<3>]"},
    {"for_else", "{% for x in [] %}{{ x }}{% else %}empty{% endfor %}", "{}", "empty"},
    {"for_filter", "{% for x in xs if x % 2 == 1 %}{{ x }}:{{ loop.length }} {% endfor %}",
     "{\"xs\": [1, 2, 3, 4, 5]}", "1:3 3:3 5:3 "},
    {"for_unpack",
     "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
     "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;ba"},
    {"for_string", "{% for c in 'héy' %}[{{ c }}]{% endfor %}", "{}", "[h][é][y]"},
    {"break_continue",
     "{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}{% break %}{% endif "
     "%}{{ x }}{% endfor %}",
     "{}", "0134"},
    {"loop_cycle", "{% for x in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}", "{}", "abab"},
    {"nested_loop",
     "{% for a in [1,2] %}{% for b in [3,4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{% endfor %}", "{}",
     "113 214 123 224 "},
    {"scoping", "{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = i * 10 %}{{ x }} {% endfor %}{{ x }}",
     "{}", "110 120 1"},
    {"if_scope", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", "{}", "5"},
    {"namespace",
     "{% set ns = namespace(count=0, found=false) %}{% for x in [1,2,3] %}{% set ns.count = ns.count + x "
     "%}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }}",
     "{}", "6 True"},
    {"set_tuple", "{% set a, b = [1, 2] %}{{ a }}{{ b }}{% set t = 1, 2 %}{{ t }}", "{}", "12(1, 2)"},
    {"set_block", "{% set x %}a {{ 1 + 1 }} b{% endset %}[{{ x }}]", "{}", "[a 2 b]"},
    {"macro",
     "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', "
     "'?') }} {{ greet(punct='.', name='C') }} [{{ greet() }}]",
     "{}", "Hi A! Hi B? Hi C. [Hi !]"},
    {"macro_sees_outer", "{% set g = 'G' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}", "{}", "G"},
    {"with", "{% with a = 1, b = 2 %}{{ a + b }}{% endwith %}[{{ a }}]", "{}", "3[]"},
    {"tests",
     "{{ x is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }} {{ {} is mapping }} {{ "
     "[] is iterable }} {{ 1 is number }} {{ true is boolean }} {{ 1 is integer }} {{ 1.0 is float }} {{ "
     "true is true }} {{ 0 is false }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 1 is eq 1 "
     "}} {{ 'a' is sequence }} {{ x is not none }} {{ 'ab' is lower }} {{ 'A' is upper }} {{ 2 is in [1,2] "
     "}}",
     "{\"x\": 1}",
     "True True True True True True True True True True True False True True True True True True True True "
     "True"},
    {"filters_str",
     "{{ '  a b  '|trim }}|{{ 'xxaxx'|trim('x') }}|{{ 'Hello'|upper }}|{{ 'Hello'|lower }}|{{ 'hELLO "
     "world'|capitalize }}|{{ 'hello big-world (x)'|title }}|{{ 'a-b-c'|replace('-', '+') }}|{{ "
     "'a-b-c'|replace('-', '', 1) }}|{{ 'one two  three'|wordcount }}|{{ 'héllo'|length }}",
     "{}", "a b|a|HELLO|hello|Hello world|Hello Big-World (X)|a+b+c|ab-c|3|5"},
    {"filters_seq",
     "{{ [3,1,2]|sort }} {{ ['b','A','c']|sort }} {{ ['b','A','c']|sort(case_sensitive=true) }} {{ "
     "[3,1,2]|sort(reverse=true) }} {{ [1,2,3]|first }} {{ [1,2,3]|last }} {{ [1,2,3]|reverse|list }} {{ "
     "'abc'|reverse }} {{ [1,2,3]|join(',') }} {{ [1,2]|join }} {{ ['a','A','b']|unique|list }} {{ "
     "[1,2,3]|sum }} {{ [1,5,3]|max }} {{ [4,2,8]|min }} {{ 'ab'|list }} {{ [1,2,3]|length }} {{ "
     "{'a':1}|count }}",
     "{}",
     "[1, 2, 3] ['A', 'b', 'c'] ['A', 'b', 'c'] [3, 2, 1] 1 3 [3, 2, 1] cba 1,2,3 12 ['a', 'b'] 6 5 2 ['a', "
     "'b'] 3 1"},
    {"filters_dict",
     "{{ d|dictsort }} {{ d|items|list }} {{ d|dictsort(by='value') }} {{ d|dictsort(reverse=true) }}",
     "{\"d\": {\"b\": 2, \"a\": 3, \"C\": 1}}",
     "[('a', 3), ('b', 2), ('C', 1)] [('b', 2), ('a', 3), ('C', 1)] [('C', 1), ('b', 2), ('a', 3)] [('C', "
     "1), ('b', 2), ('a', 3)]"},
    {"filters_attr",
     "{{ ms|map(attribute='role')|list }} {{ ms|selectattr('role', 'equalto', "
     "'user')|map(attribute='c')|list }} {{ ms|rejectattr('role', 'equalto', 'user')|list|length }} {{ "
     "ms|selectattr('x')|list }} {{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('odd')|list }} {{ "
     "['a','b']|map('upper')|list }} {{ ms|map(attribute='x', default='-')|join }} {{ "
     "ms|sort(attribute='c')|map(attribute='c')|join }}",
     "{\"ms\": [{\"role\": \"user\", \"c\": \"2\"}, {\"role\": \"assistant\", \"c\": \"1\", \"x\": true}, "
     "{\"role\": \"user\", \"c\": \"3\"}]}",
     "['user', 'assistant', 'user'] ['2', '3'] 1 [{'role': 'assistant', 'c': '1', 'x': True}] [1, 3] [2, 4] "
     "['A', 'B'] -True- 123"},
    {"filters_num",
     "{{ -3|abs }} {{ '42'|int }} {{ '4.7'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ '0x1A'|int(0, 16) }} {{ "
     "3|float }} {{ 'x'|float }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 3.14159|round(2, "
     "'floor') }} {{ 3.1|round(0, 'ceil') }} {{ 5|round }} {{ 7|string ~ 'x' }}",
     "{}", "3 42 4 0 7 26 3.0 0.0 2.0 4.0 2.67 3.14 4.0 5 7x"},
    {"filters_default",
     "{{ missing|default('d') }} {{ missing|d('e') }} {{ ''|default('f') }} {{ ''|default('g', true) }} {{ "
     "none|default('h') }} {{ 0|default('i', boolean=true) }}",
     "{}", "d e  g None i"},
    {"filter_indent",
     "[{{ 'a\nb\n\nc'|indent }}] [{{ 'a\nb'|indent(2, true) }}] [{{ 'a\n\nb'|indent(1, blank=true) }}] [{{ "
     "'x\ny'|indent('> ') }}]",
     "{}", "[a\n    b\n\n    c] [  a\n  b] [a\n \n b] [x\n> y]"},
    {"tojson",
     "{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ [1, 'é', none, true, 1.5]|tojson }}|{{ 'a\"b\\\\c\n'|tojson "
     "}}|{{ d|tojson(sort_keys=true) }}|{{ d|tojson(separators=(',', ':')) }}|{{ []|tojson(indent=2) }}|{{ "
     "'é😀'|tojson(ensure_ascii=true) }}",
     "{\"d\": {\"z\": 1, \"a\": {\"x\": [1, {}]}, \"u\": \"ü\\u0001\"}}",
     "{\"z\": 1, \"a\": {\"x\": [1, {}]}, \"u\": \"ü\\u0001\"}|{\n  \"z\": 1,\n  \"a\": {\n    \"x\": [\n    "
     "  1,\n      {}\n    ]\n  },\n  \"u\": \"ü\\u0001\"\n}|[1, \"é\", null, true, "
     "1.5]|\"a\\\"b\\\\c\\n\"|{\"a\": {\"x\": [1, {}]}, \"u\": \"ü\\u0001\", \"z\": "
     "1}|{\"z\":1,\"a\":{\"x\":[1,{}]},\"u\":\"ü\\u0001\"}|[]|\"\\u00e9\\ud83d\\ude00\""},
    {"methods_str",
     "{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a b c'.rsplit(' ', 1) "
     "}} {{ '  x  '.strip() }}|{{ 'xxyxx'.lstrip('x') }}|{{ 'xxyxx'.rstrip('x') }} {{ 'abc'.startswith('ab') "
     "}} {{ 'abc'.endswith(('x', 'c')) }} {{ 'aXa'.replace('a', 'b') }} {{ 'ab'.upper() }} {{ 'AB'.lower() "
     "}} {{ 'hello world'.title() }} {{ 'hello'.capitalize() }} {{ 'hello'.find('l') }} {{ "
     "'hello'.count('l') }} {{ '-'.join(['a', 'b']) }} {{ '12'.isdigit() }} {{ 'a\nb'.splitlines() }}",
     "{}",
     "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] ['a b', 'c'] x|yxx|xxy True True bXb AB ab Hello World "
     "Hello 2 2 a-b True ['a', 'b']"},
    {"methods_dict",
     "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 5) }} {{ d.keys()|list }} {{ d.values()|list }} {% "
     "for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}",
     "{\"d\": {\"a\": 1, \"b\": 2}}", "1 None 5 ['a', 'b'] [1, 2] a1b2"},
    {"undefined_print",
     "[{{ nothing }}] [{{ d.nothing }}] [{{ nothing|length }}] [{{ nothing|upper }}] [{{ nothing ~ 'x' }}] "
     "{{ nothing is defined }} {% for x in nothing %}x{% endfor %}{% if not nothing %}falsy{% endif %}",
     "{\"d\": {}}", "[] [] [0] [] [x] False falsy"},
    {"unicode", "{{ s|length }} {{ s[0] }} {{ s|upper }} {{ s|reverse }} {{ s.split('é') }} {{ s|tojson }}",
     "{\"s\": \"café ünïcode 日本語 😀\"}",
     "18 c CAFÉ ÜNÏCODE 日本語 😀 😀 語本日 edocïnü éfac ['caf', ' ünïcode 日本語 😀'] \"café ünïcode 日本語 "
     "😀\""},
    {"string_concat_adjacent", "{{ 'a' 'b' \"c\" }}", "{}", "abc"},
    {"filter_precedence",
     "{{ -1|abs }} {{ 'a' ~ 'b'|upper }} {{ xs|length - 1 }} {{ 'x' if xs|length > 1 else 'y' }}",
     "{\"xs\": [1, 2]}", "1 aB 1 x"},
    {"print_tag", "{% print 'p' ~ 1 %}", "{}", "p1"},
    {"dict_global",
     "{{ dict(a=1, b='x') }} {{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ namespace(a=1).a }}", "{}",
     "{'a': 1, 'b': 'x'} [0, 1, 2] [1, 3, 5] 1"},
    {"repr_strings", "{{ ['it\\'s', 'say \"hi\"', 'both \\' \"', 'tab\\t', 'é'] }}", "{}",
     "[\"it's\", 'say \"hi\"', 'both \\' \"', 'tab\\t', 'é']"},
    {"is_test_precedence", "{{ not x is none }} {{ x is none or true }} {{ 'a' if x is defined else 'b' }}",
     "{\"x\": null}", "False True a"},
    {"none_attr_tests",
     "{% if m.tool_calls %}tc{% endif %}{% if m.reasoning is defined and m.reasoning is not none %}r{% endif "
     "%}done",
     "{\"m\": {\"role\": \"assistant\", \"reasoning\": null}}", "done"},
    {"int_keys",
     "{% set d = {0: 'a', 512: 'b', 2: 'c'} %}{{ d[512] }} {{ d|dictsort }} {{ d|tojson }} {{ "
     "d|tojson(sort_keys=true) }} {{ 2 in d }} {{ d }}",
     "{}",
     "b [(0, 'a'), (2, 'c'), (512, 'b')] {\"0\": \"a\", \"512\": \"b\", \"2\": \"c\"} {\"0\": \"a\", \"2\": "
     "\"c\", \"512\": \"b\"} True {0: 'a', 512: 'b', 2: 'c'}"},
    {"line_continuation", "{{ 'a\\\nb' }}", "{}", "ab"},
    {"macro_local_set",
     "{% macro m(x) %}{% if y is not defined %}{% set y = 'local' %}{% endif %}{{ x }}{{ y }}{% endmacro "
     "%}{{ m(1) }}[{{ y }}]",
     "{}", "1local[]"},
    {"namespace_from_dict",
     "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns.c is defined }}", "{}", "12False"},
    {"generators",
     "{% set g = [1, 2, 3]|select('odd') %}{{ g is iterable }} {{ g is sequence }} {% if g %}T{% endif %} {{ "
     "g|list }} {{ g|list }}|{% if []|select %}empty generators are true{% endif %}|{% set h = [1, 2, "
     "3]|map('string') %}{{ h|first }}{{ h|join }}|{{ false|map('upper')|list }}|{{ [5, 4]|reverse|list }}{{ "
     "['a']|map('upper')|list|length }}",
     "{}", "True False T [1, 3] []|empty generators are true|123|[]|[4, 5]1"},
    {"markup", "{{ (['x']|safe)[:2] }}{{ undefined_var|safe + '!' }}", "{}", "['!"},
    {"loop_changed", "{% for m in ms %}{% if loop.changed(m.r) %}<{{ m.r }}>{% endif %}{{ m.c }}{% endfor %}",
     "{\"ms\": [{\"r\": \"u\", \"c\": 1}, {\"r\": \"u\", \"c\": 2}, {\"r\": \"a\", \"c\": 3}, {\"r\": \"u\", "
     "\"c\": 4}]}",
     "<u>12<a>3<u>4"},
};

class Jinja2Reference : public ::testing::TestWithParam<Case> {};

TEST_P(Jinja2Reference, RendersLikeJinja2) {
  const Case& c = GetParam();
  auto out = render(c.tmpl, ojson::parse(c.context));
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out.value(), c.expected);
}

INSTANTIATE_TEST_SUITE_P(Constructs, Jinja2Reference, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(Jinja, GenerationTagRendersItsBody) {
  // transformers' AssistantTracker extension: outside assistant-mask tracking the body renders as is.
  auto out = render("{% generation %}gen {{ 1 }}{% endgeneration %}!");
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out.value(), "gen 1!");
}

TEST(Jinja, RaiseExceptionSurfacesTheMessage) {
  const std::string err = error_of(
      "a\n{% if true %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}");
  EXPECT_NE(err.find("Only user and assistant roles are supported!"), std::string::npos) << err;
  EXPECT_NE(err.find("line 2"), std::string::npos) << err;
}

TEST(Jinja, UnsupportedConstructsNameLineAndColumn) {
  EXPECT_EQ(error_of("x\n  {% include 'other.jinja' %}"), "line 2, column 6: unsupported tag 'include'");
  EXPECT_EQ(error_of("{{ x | frobnicate }}"), "line 1, column 8: unsupported filter 'frobnicate'");
  EXPECT_EQ(error_of("\n\n{% if x is frobnicated %}{% endif %}"),
            "line 3, column 12: unsupported test 'frobnicated'");
  EXPECT_EQ(error_of("{% for x in xs recursive %}{% endfor %}"),
            "line 1, column 16: recursive loops are not supported");
  EXPECT_EQ(error_of("{{ 'x'.zfill(3) }}"), "line 1, column 7: unsupported str method 'zfill'");
  EXPECT_EQ(error_of("{{ '%s' % 1 }}"),
            "line 1, column 9: printf-style string formatting with % is not supported");
  EXPECT_EQ(error_of("{% frobnicate %}"), "line 1, column 4: unknown tag 'frobnicate'");
}

TEST(Jinja, SyntaxErrorsNameLineAndColumn) {
  EXPECT_EQ(
      error_of("{% for x in xs %}\n{{ x }}"),
      "line 2, column 8: unexpected end of template: expected 'endfor' or 'else' to close 'for' from line 1");
  EXPECT_EQ(error_of("{{ 1 + }}"), "line 1, column 8: expected an expression, got end of print statement");
  EXPECT_EQ(error_of("ab\n{# never closed"), "line 2, column 1: missing end of comment tag");
  EXPECT_EQ(error_of("{% if x %}{% endfor %}"),
            "line 1, column 14: unexpected tag 'endfor', expected 'elif' or 'else' or 'endif'");
  EXPECT_EQ(error_of("{% break %}"), "line 1, column 4: 'break' outside of a for loop");
  EXPECT_EQ(error_of("{{ (1 }}"), "line 1, column 7: unexpected '}', expected ')'");
  EXPECT_EQ(error_of("{{ 'abc }}"), "line 1, column 4: unterminated string literal");
}

TEST(Jinja, UndefinedBehavesLikeJinja2Default) {
  // Printing, iterating, testing and `~` treat undefined as empty; using it as a value fails.
  EXPECT_EQ(render("[{{ x }}][{{ x ~ 'a' }}][{{ x|length }}]{% for i in x %}i{% endfor %}{{ x is defined }}")
                .value(),
            "[][a][0]False");
  EXPECT_EQ(error_of("{{ x.y }}"), "line 1, column 5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ x['y'] }}"), "line 1, column 5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ x + 1 }}"), "line 1, column 6: 'x' is undefined");
  EXPECT_EQ(error_of("{{ 1 < x }}"), "line 1, column 8: 'x' is undefined");
  EXPECT_EQ(error_of("{{ x() }}"), "line 1, column 5: 'x' is undefined");
  EXPECT_EQ(error_of("{{ x|tojson }}"),
            "line 1, column 6: Object of type Undefined is not JSON serializable");
  // A missing key is undefined; going one step further is an error naming the missing attribute.
  EXPECT_EQ(render("{{ m.nope is defined }}", ojson{{"m", ojson::object()}}).value(), "False");
  EXPECT_EQ(error_of("{{ m.nope.deeper }}", ojson{{"m", ojson::object()}}),
            "line 1, column 10: 'dict object' has no attribute 'nope'");
  EXPECT_EQ(error_of("{{ l[3] + 1 }}", ojson{{"l", ojson::array()}}),
            "line 1, column 9: list object has no element 3");
}

TEST(Jinja, RuntimeErrorsNameTheirLine) {
  EXPECT_EQ(error_of("a\nb\n   {{ 'a' + 1 }}"),
            "line 3, column 11: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{{ 1 // 0 }}"), "line 1, column 6: integer division or modulo by zero");
  EXPECT_EQ(error_of("{% set x = 1 %}{% set x.a = 2 %}"),
            "line 1, column 19: cannot assign attribute on non-namespace object");
  EXPECT_EQ(error_of("{% for a, b in [[1, 2, 3]] %}{% endfor %}"),
            "line 1, column 4: too many values to unpack (expected 2)");
  EXPECT_EQ(error_of("{{ none.x }}"), "");  // jinja2 prints nothing for an attribute of None
  EXPECT_EQ(error_of("{{ 'x' in none }}"), "line 1, column 11: argument of type 'NoneType' is not iterable");
  EXPECT_EQ(error_of("{{ x[1:] }}", ojson{{"x", true}}),
            "line 1, column 5: 'bool' object is not subscriptable");
}

TEST(Jinja, MacrosRecurseAndReportErrorsInside) {
  EXPECT_EQ(render("{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(3) }}")
                .value(),
            "321");
  EXPECT_EQ(error_of("{% macro f(x) %}\n{{ x + 1 }}{% endmacro %}{{ f('a') }}"),
            "line 2, column 6: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
            "line 1, column 4: macro 'f' nested deeper than 200 calls");
  EXPECT_EQ(error_of("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}"),
            "line 1, column 4: macro 'f' takes not more than 1 argument(s)");
}

TEST(Jinja, GeneratorsHaveNoLength) {
  EXPECT_EQ(error_of("{{ [1, 2]|map('string')|length }}"),
            "line 1, column 25: object of type 'generator' has no len()");
  EXPECT_EQ(error_of("{{ [1]|select|last }}"), "line 1, column 15: 'generator' object is not reversible");
  EXPECT_EQ(error_of("{{ none|indent }}"),
            "line 1, column 9: unsupported operand type(s) for +=: 'NoneType' and 'str'");
}

TEST(Jinja, ImmutableSandboxRefusesMutation) {
  // ImmutableSandboxedEnvironment: list.append and dict.update read as undefined and fail when called.
  EXPECT_EQ(error_of("{% set l = [] %}{{ l.append(1) }}"),
            "line 1, column 28: access to attribute 'append' of 'list' object is unsafe.");
  EXPECT_EQ(error_of("{{ d.update({}) }}", ojson{{"d", ojson::object()}}),
            "line 1, column 12: access to attribute 'update' of 'dict' object is unsafe.");
}

TEST(Jinja, StrftimeNowFormatsTheCurrentDate) {
  auto out = render("{{ strftime_now('%Y') }}");
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out.value().size(), 4u);
  EXPECT_GE(std::stoi(out.value()), 2024);
}

TEST(JinjaValue, JsonRoundTripKeepsKeyOrder) {
  const ojson j = ojson::parse(R"({"z": 1, "a": [true, null, 2.5, "é"], "m": {"y": {}, "b": []}})");
  auto back = to_json(from_json(j));
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back.value().dump(), j.dump());
  EXPECT_FALSE(to_json(Value::undefined("u")).ok());
}

TEST(ChatTemplate, RenderChatBuildsTheApplyChatTemplateContext) {
  auto t = ChatTemplate::parse(
      "{{ messages|length }}|{{ tools is none }}|{{ documents is none }}|{{ add_generation_prompt }}|"
      "{{ bos_token }}|{{ eos_token is defined }}|{{ enable_thinking }}");
  ASSERT_TRUE(t.ok()) << t.status().message();
  const ojson messages =
      ojson::parse(R"([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])");
  auto out = t->render_chat(messages, ojson(), true, ojson{{"enable_thinking", false}}, "<s>", std::nullopt);
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_EQ(out.value(), "2|True|True|True|<s>|False|False");
  EXPECT_FALSE(
      t->render_chat(messages, ojson(), true, ojson{{"messages", ojson::array()}}, std::nullopt, std::nullopt)
          .ok());
  EXPECT_FALSE(t->render_chat(ojson::object(), ojson(), true, ojson(), std::nullopt, std::nullopt).ok());
}

TEST(ChatTemplate, ReadsNamedTemplatesAndAddedTokenObjects) {
  const std::string path =
      (std::filesystem::temp_directory_path() / "ferrum_test_tokenizer_config.json").string();
  {
    std::ofstream f(path);
    f << R"({"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}],
             "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>"})";
  }
  auto src = chat_template_from_tokenizer_config(path);
  std::remove(path.c_str());
  ASSERT_TRUE(src.ok()) << src.status().message();
  EXPECT_EQ(src->chat_template, "D");
  EXPECT_EQ(src->tool_use_template.value_or(""), "T");
  EXPECT_EQ(src->bos_token.value_or(""), "<s>");
  EXPECT_EQ(src->eos_token.value_or(""), "</s>");
}

}  // namespace
}  // namespace ferrum::jinja

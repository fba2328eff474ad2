use super::*;

fn run(t: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse(t)?.execute(data)
}

fn data() -> Value {
    let v: Value = serde_json::from_str(
        r#"{"Id":"abc","State":{"Pid":42,"Running":true},"Config":{"Env":["A=1","B=2"],"Labels":{"z":"1","a":"2"},"Cmd":null},"Name":"/web","Size":4261574}"#,
    )
    .unwrap();
    v
}

#[test]
fn fields_and_json_keep_order() {
    let d = data();
    assert_eq!(run("{{.State.Pid}}", &d).unwrap(), "42");
    assert_eq!(run("{{.Size}}", &d).unwrap(), "4261574");
    assert_eq!(run("{{json .Config.Env}}", &d).unwrap(), r#"["A=1","B=2"]"#);
    assert_eq!(
        run("{{json .State}}", &d).unwrap(),
        r#"{"Pid":42,"Running":true}"#
    );
    assert_eq!(run("{{.Config.Env}}", &d).unwrap(), "[A=1 B=2]");
    assert_eq!(run("{{.Config.Labels}}", &d).unwrap(), "map[a:2 z:1]");
    assert_eq!(run("{{.Nope}}", &d).unwrap(), "<no value>");
    assert_eq!(run("{{.Config.Cmd}}", &d).unwrap(), "<nil>");
}

#[test]
fn control_flow_and_variables() {
    let d = data();
    assert_eq!(
        run("{{range .Config.Env}}{{.}};{{end}}", &d).unwrap(),
        "A=1;B=2;"
    );
    assert_eq!(
        run("{{range $i, $e := .Config.Env}}{{$i}}={{$e}} {{end}}", &d).unwrap(),
        "0=A=1 1=B=2 "
    );
    assert_eq!(
        run("{{range $k, $v := .Config.Labels}}{{$k}}{{$v}}{{end}}", &d).unwrap(),
        "a2z1"
    );
    assert_eq!(
        run("{{if .State.Running}}up{{else}}down{{end}}", &d).unwrap(),
        "up"
    );
    assert_eq!(
        run(
            "{{if eq .Name \"/x\"}}x{{else if eq .Name \"/web\"}}web{{end}}",
            &d
        )
        .unwrap(),
        "web"
    );
    assert_eq!(
        run("{{with .State}}{{.Pid}}{{end}} {{$.Id}}", &d).unwrap(),
        "42 abc"
    );
    assert_eq!(
        run("{{range .Config.Cmd}}x{{else}}none{{end}}", &d).unwrap(),
        "none"
    );
    assert_eq!(run("{{$x := .Id}}{{$x}}", &d).unwrap(), "abc");
    assert_eq!(run("a {{- /* c */ -}} b", &d).unwrap(), "ab");
    assert_eq!(
        run(
            "{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}}{{end}}",
            &d
        )
        .unwrap(),
        "A=1"
    );
}

#[test]
fn functions_as_docker() {
    let d = data();
    assert_eq!(run("{{join .Config.Env \",\"}}", &d).unwrap(), "A=1,B=2");
    assert_eq!(run("{{split .Id \"b\"}}", &d).unwrap(), "[a c]");
    assert_eq!(
        run(
            "{{upper .Id}} {{lower \"AB\"}} {{title \"hello world\"}}",
            &d
        )
        .unwrap(),
        "ABC ab Hello World"
    );
    assert_eq!(
        run("{{truncate .Name 3}}|{{pad .Id 1 2}}|", &d).unwrap(),
        "/we| abc  |"
    );
    assert_eq!(
        run(
            "{{len .Config.Env}} {{index .Config.Env 1}} {{index .Config.Labels \"a\"}}",
            &d
        )
        .unwrap(),
        "2 B=2 2"
    );
    assert_eq!(
        run("{{printf \"%s-%d-%5s|%-4d|\" .Id .State.Pid \"x\" 7}}", &d).unwrap(),
        "abc-42-    x|7   |"
    );
    assert_eq!(run("{{println .Id}}", &d).unwrap(), "abc\n");
    assert_eq!(
        run("{{.Id | upper | printf \"<%s>\"}}", &d).unwrap(),
        "<ABC>"
    );
    assert_eq!(
        run(
            "{{and 1 0}} {{or 0 \"x\"}} {{not true}} {{ne 1 2}} {{lt 1 2}}",
            &d
        )
        .unwrap(),
        "0 x false true true"
    );
    assert_eq!(run("{{(index .Config.Env 0) | len}}", &d).unwrap(), "3");
}

#[test]
fn errors_are_errors() {
    let d = data();
    assert!(matches!(
        Template::parse("{{.Id"),
        Err(TemplateError::Parse(_))
    ));
    assert!(matches!(
        Template::parse("{{nosuch .Id}}"),
        Err(TemplateError::Parse(_))
    ));
    assert!(matches!(
        Template::parse("{{if .Id}}x"),
        Err(TemplateError::Parse(_))
    ));
    assert!(matches!(
        Template::parse("{{end}}"),
        Err(TemplateError::Parse(_))
    ));
    assert!(matches!(
        Template::parse("{{$nope}}"),
        Err(TemplateError::Parse(_))
    ));
    assert!(run("{{index .Config.Env 9}}", &d).is_err());
    assert!(run("{{.Config.Cmd.X}}", &d).is_err());
    assert!(run("{{upper .State}}", &d).is_err());
    let row = Value::Struct(
        "*formatter.ContainerContext",
        vec![("ID".into(), Value::str("x"))],
    );
    let e = run("{{.Nope}}", &row).unwrap_err().to_string();
    assert_eq!(
        e,
        "template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.ContainerContext"
    );
}

#[test]
fn row_json_escapes_html_like_docker() {
    let row = Value::Struct(
        "*formatter.HistoryContext",
        vec![
            ("ID".into(), Value::str("<missing>")),
            ("\0Labels".into(), Value::Map(vec![])),
        ],
    );
    assert_eq!(row.to_json(), r#"{"ID":"\u003cmissing\u003e"}"#);
    assert_eq!(run("{{json .ID}}", &row).unwrap(), r#""<missing>""#);
}

#[test]
fn table_header_from_field_names() {
    let f = RowFormat::parse(Some("table {{.Repository}}\\t{{.Tag}}")).unwrap();
    let rows = vec![Value::Struct(
        "*formatter.ImageContext",
        vec![
            ("Repository".into(), Value::str("busybox")),
            ("Tag".into(), Value::str("latest")),
        ],
    )];
    let mut out = Vec::new();
    f.write(
        &mut out,
        &rows,
        &[("Repository", "REPOSITORY"), ("Tag", "TAG")],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "REPOSITORY   TAG\nbusybox      latest\n"
    );
}

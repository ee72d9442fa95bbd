rule PosternFormatsYara
{
  strings:
    $marker = "POSTERN-YARA-MARKER-41b7"
  condition:
    $marker
}
